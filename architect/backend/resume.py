"""Resuming after a restart: the one place that knows what happens to the agents an
earlier life of the daemon left working.

At start, before any channel opens (`Resumption.start`):

- agents of other task runs, and of this one with `resume_window = 0`, are marked
  `disconnect` and their units go back to the pool (the database does it in one
  transaction);
- this run's working agents are taken back with their task data, status and live
  updates (`take_back`); one whose task data was never recorded (a database older
  than schema 2) cannot carry on and becomes `disconnect`;
- the task runner puts them to work again (a live room restarts, `resumed`); each one's
  `[task] assignment_duration` goes on counting from its creation as stored;
- they are held *unclaimed*: the first router that shows one (in `return_statuses`,
  or by any packet about it) gets it, and the status and live updates it made
  meanwhile go out then (`claim`, called by the ClientIOHandler, which binds it);
- an agent whose page holds a socket (live, remote procedure) gets `window` seconds
  to show up, then becomes `disconnect`; a static or onboarding page holds none and
  may show itself first by submitting, so it waits as it would have without the
  restart; with a single router those are claimed as soon as it opens, so a router
  that restarted too learns them before their pages submit (`claim_unwatched`);
- embedded, the router is as new as the backend: it is told the agents too
  (`RouterExpectations`), takes their pages' REST calls, and its own grace rule
  disconnects a page that does not come back within the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from architect.backend.agent_registry import AgentRegistry
from architect.lifecycle import unit_status_if_lost
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, MEPHISTO_BOUND_LIVE_UPDATE, Status
from architect.storage import Database, Direction, LiveUpdate, ResumableAgent, Unit
from architect.tasks.agent import Agent
from architect.tasks.runner import TaskRunner

log = Logger()

Resumed = list[tuple[Agent, Unit | None]]  # each agent with its unit (None: onboarding)

# A router is told of the agents that finished in the last FINISHED_TOLD_FOR seconds (a
# router's status_retention), at most FINISHED_SHOWN of them, the newest.
FINISHED_TOLD_FOR = 600.0
FINISHED_SHOWN = 20_000


def finished_lately(
    database: Database, task_run_id: int, clock: IReactorTime
) -> Deferred[dict[str, str]]:
    """The run's agents that finished in the last FINISHED_TOLD_FOR seconds: id -> status.
    A router that (re)started is told them, so a page whose submission was stored just
    before the crash, and whose answer was lost with it, gets its status, not 404."""
    since = clock.seconds() - FINISHED_TOLD_FOR
    return database.recently_finished_agents(task_run_id, since, FINISHED_SHOWN)


class RouterExpectations(Protocol):
    """What a router in the same process is told of the agents taken back."""

    def expect_agents(self, statuses: Mapping[str, str], grace: float | None) -> None: ...

    def finished_lately(self, statuses: Mapping[str, str]) -> None:
        """Agents that finished shortly before the restart, with their final statuses."""
        ...


class Resumption:
    """The agents taken back at a restart, until a router shows each or its window ends."""

    def __init__(self, clock: IReactorTime, window: float = 0.0, static_task: bool = False) -> None:
        self.clock = clock
        self.window = window  # seconds; 0: agents working at a restart are not taken back
        self.static_task = static_task
        self.unclaimed: dict[str, Agent] = {}  # taken back, not shown by any router yet
        self._unwatched: set[str] = set()  # unclaimed ones without a window (no socket)
        self._timers: list[IDelayedCall] = []

    # --- at start ---

    async def start(
        self,
        database: Database,
        task_run_id: int,
        registry: AgentRegistry,
        runner: TaskRunner,
        router: RouterExpectations | None = None,
    ) -> Resumed:
        """Clear or take back what the last life of the daemon left working."""
        keep = task_run_id if self.window else None
        if router is not None:
            router.finished_lately(await finished_lately(database, task_run_id, self.clock))
        recovered = await database.recover_after_restart(keep_task_run_id=keep)
        if recovered:
            log.info(
                "{n} agents were working when the daemon stopped: marked disconnect,"
                " their units are back in the pool",
                n=len(recovered),
            )
        if not self.window:
            return []
        resumed = await self.take_back(
            database, registry, task_run_id, await database.resumable_agents(task_run_id)
        )
        runner.agents_resumed(resumed)
        self.expect(resumed, router)
        return resumed

    async def take_back(
        self,
        database: Database,
        registry: AgentRegistry,
        task_run_id: int,
        records: Sequence[ResumableAgent],
    ) -> Resumed:
        """The agents of `records` (this run's only) as they were, with their live updates."""
        records = [record for record in records if record.agent.task_run_id == task_run_id]
        for record in records:
            if not isinstance(record.init_task_data, dict):
                stored = record.agent
                log.info(
                    "agent {agent_id} has no recorded task data: disconnect",
                    agent_id=stored.agent_id,
                )
                unit_status = unit_status_if_lost() if record.unit is not None else None
                await database.set_agent_status(stored.agent_id, Status.DISCONNECT, unit_status)
        # From here on, no wait: an agent whose window (assignment_duration) ended while the
        # daemon was down expires on the clock's next turn, once the runner has it.
        resumed: Resumed = []
        for record in records:
            stored = record.agent
            if not isinstance(record.init_task_data, dict):
                continue
            agent = registry.new_agent(
                stored.agent_id,
                record.worker,
                record.init_task_data,
                stored.agent_registration_id,
                stored.status,
                stored.kind,
                created_at=stored.created_at,  # the window goes on counting
            )
            agent.restore_live_updates(
                [_logged(update) for update in record.live_updates if isinstance(update.data, dict)]
            )
            resumed.append((agent, record.unit))
        if resumed:
            log.info(
                "{n} agents were working when the daemon stopped: kept, waiting for them",
                n=len(resumed),
            )
        return resumed

    def expect(self, resumed: Resumed, router: RouterExpectations | None = None) -> None:
        """Wait for the agents taken back: with a window those whose page holds a socket,
        without one the others (static and onboarding pages)."""
        with_socket = [
            agent
            for agent, unit in resumed
            if unit is not None and not self.static_task  # unit None: an onboarding agent
        ]
        watched = {agent.agent_id for agent in with_socket}
        without = [agent for agent, _ in resumed if agent.agent_id not in watched]
        self.wait_for(with_socket, self.window)
        self.wait_for(without, None)
        if router is not None:
            router.expect_agents({a.agent_id: a.status for a in with_socket}, self.window)
            router.expect_agents({a.agent_id: a.status for a in without}, None)

    def wait_for(self, agents: Sequence[Agent], window: float | None) -> None:
        """Hold `agents` unclaimed; those still unclaimed after `window` seconds are
        `disconnect` (with no window they wait for good)."""
        for agent in agents:
            self.unclaimed[agent.agent_id] = agent
            if window is None:
                self._unwatched.add(agent.agent_id)
        if agents and window is not None:
            ids = [agent.agent_id for agent in agents]
            self._timers.append(self.clock.callLater(window, self._window_over, ids))

    # --- while serving ---

    def claim(self, agent_id: str) -> Agent | None:
        """A router showed this agent: it is no longer waited for (None if it was not)."""
        self._unwatched.discard(agent_id)
        return self.unclaimed.pop(agent_id, None)

    def claim_unwatched(self) -> list[Agent]:
        """The only router opened: the agents whose pages hold no socket are its."""
        return [agent for agent_id in list(self._unwatched) if (agent := self.claim(agent_id))]

    def claim_all(self) -> list[Agent]:
        """The only router opened, one that holds a seat for a page (protocol.RESUME): every
        agent taken back is its (that router's grace rule now ends those whose page does
        not come back, within `window` seconds)."""
        return [agent for agent_id in list(self.unclaimed) if (agent := self.claim(agent_id))]

    def stop(self) -> None:
        timers, self._timers = self._timers, []
        for timer in timers:
            if timer.active():
                timer.cancel()

    def _window_over(self, agent_ids: list[str]) -> None:
        self._timers = [t for t in self._timers if t.active()]
        gone = [self.unclaimed.pop(i) for i in agent_ids if i in self.unclaimed]
        self._unwatched.difference_update(agent_ids)
        if gone:
            log.info("{n} agents of the last run did not come back: disconnect", n=len(gone))
        for agent in gone:
            if agent.is_active:
                agent.set_status(Status.DISCONNECT, push=False)


def _logged(update: LiveUpdate) -> tuple[str, dict[str, Any]]:
    """A logged live update as (packet type, data), as the agent keeps it."""
    packet_type = (
        CLIENT_BOUND_LIVE_UPDATE
        if update.direction == Direction.CLIENT_BOUND
        else MEPHISTO_BOUND_LIVE_UPDATE
    )
    return packet_type, update.data
