"""AgentRecorder: keeps the database in step with every agent of this process.

It listens to each agent it watches and writes each status change (with what it
does to the agent's unit: `lifecycle.unit_status_after`), each live update in
either direction, and the agent's task data. The writes are not waited for by
the task; `settled()` fires once those issued so far are committed, and what the
backend sends out waits for those issued before it (`barrier`: write_barrier.py).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from architect.backend.write_barrier import WriteBarrier
from architect.lifecycle import UnitStatus, unit_status_after
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE
from architect.storage import Database, Direction
from architect.tasks.agent import Agent

log = Logger()


class AgentRecorder:
    def __init__(self, database: Database, return_units: bool = True) -> None:
        self.database = database
        self.return_units = return_units  # [task] return_units
        self._writes: set[Deferred[Any]] = set()
        # What goes out to the routers waits for the writes issued before it (routes.py).
        self.barrier = WriteBarrier()

    def watch(self, agent: Agent) -> None:
        agent.add_status_listener(self._record_status)
        agent.add_live_update_listener(self._record_live_update)

    def settled(self) -> Deferred[None]:
        """Fires once the writes issued so far are committed."""
        pending = list(self._writes)
        return gatherResults(pending, consumeErrors=True).addBoth(lambda _: None)

    def record_init_data(self, agent: Agent) -> None:
        """Kept so that a restarted daemon can carry the agent on (not waited for: the
        worker need not wait, and an agent without it is disconnected at a restart)."""
        self._track(
            self.database.set_agent_init_data(agent.agent_id, agent.init_task_data),
            "recording the task data of agent {agent_id}",
            agent.agent_id,
        )

    def _record_status(self, agent: Agent, old: str, new: str) -> None:
        if new == agent.stored_status:  # committed already, with the submission
            return
        unit_status = None
        if not agent.is_onboarding:
            unit_status = unit_status_after(old, new, self.return_units)
            if unit_status == UnitStatus.AVAILABLE:
                log.info(
                    "agent {agent_id} is {status}: its unit goes back to the pool",
                    agent_id=agent.agent_id,
                    status=new,
                )
        self._track(
            self.database.set_agent_status(agent.agent_id, new, unit_status),
            "recording the status of agent {agent_id}",
            agent.agent_id,
        )

    def _record_live_update(self, agent: Agent, packet_type: str, data: dict[str, Any]) -> None:
        direction = (
            Direction.CLIENT_BOUND
            if packet_type == CLIENT_BOUND_LIVE_UPDATE
            else Direction.MEPHISTO_BOUND
        )
        update_id = data.get("update_id")
        self._track(
            self.database.store_live_update(
                agent.agent_id,
                direction,
                data,
                update_id if isinstance(update_id, str) else None,
            ),
            "logging a live update of agent {agent_id}",
            agent.agent_id,
        )

    def _track(self, d: Deferred[Any], what: str, agent_id: str) -> None:
        self._writes.add(d)

        def done(result: Any) -> None:
            self._writes.discard(d)

        def failed(failure: Any) -> None:
            log.failure(what + " failed", failure, agent_id=agent_id)

        d.addErrback(failed).addBoth(done)
        self.barrier.track(d)
