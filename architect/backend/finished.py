"""FinishedAgents: what the backend does with a packet about an agent it no longer holds.

The pool holds the agents at work only; one that finished (`lifecycle.FINAL`) is
dropped, and the database answers for it (`WorkerPool.finished_agent`). A packet about
it comes late (a page still open, a router behind) and gets what it got when finished
agents were held: logged at info, no traceback.

- a unit submission is kept, unless the agent submitted already (a double click), or
  its time ran out (`[task] assignment_duration`: an expired agent's work is not taken,
  its unit may be another worker's by now): then it is refused (`SubmissionRefused`,
  which a router waiting for our word answers the worker with), the router's copies of
  its files go, and its router is told `expired` again, for the page;
- an onboarding submission is kept, and refused as task missing; one whose time ran out
  is refused as expired, and not kept;
- a live update is dropped: the agent takes none any more;
- a router that still shows it at work is told its final status.

A packet about an agent the run never had is handled as before, with a warning (a
router showing one at work is told `disconnect`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from architect.backend.channel import Channel
from architect.backend.registration import FinishedAgent, Registration, WorkerPool
from architect.backend.routes import AgentRoutes
from architect.backend.store import SubmissionStore
from architect.protocol import UPDATE_STATUS, FailureReason, Packet, Status, SubmissionRefused

log = Logger()
T = TypeVar("T")

Save = Callable[[str | None], "Deferred[None]"]  # stores the submission as this worker's


class FinishedAgents:
    def __init__(self, pool: WorkerPool, store: SubmissionStore, routes: AgentRoutes) -> None:
        self.pool = pool
        self.store = store
        self.routes = routes
        # Agents whose unit submission is being stored: one may finish (and be dropped)
        # meanwhile, and its next submission must not pass for the first.
        self.submitting: set[str] = set()

    def storing(self, agent_id: str, d: Deferred[T]) -> Deferred[T]:
        """`d` stores a unit submission of the agent (held or not)."""
        self.submitting.add(agent_id)

        def done(result: T) -> T:
            self.submitting.discard(agent_id)
            return result

        return d.addBoth(done)

    def unit_submission(
        self, channel: Channel, agent_id: str, data: dict[str, Any], save: Save
    ) -> Deferred[None]:
        return Deferred.fromCoroutine(self._unit_submission(channel, agent_id, data, save))

    async def _unit_submission(
        self, channel: Channel, agent_id: str, data: dict[str, Any], save: Save
    ) -> None:
        finished = await self.pool.finished_agent(agent_id)
        if finished is None:
            log.warn(
                "submission for agent {agent_id}, unknown to this backend: stored anyway",
                agent_id=agent_id,
            )
            await save(None)
            return
        if finished.timed_out:
            log.info(
                "submission for agent {agent_id} after its time ran out"
                " ([task] assignment_duration): refused, the page is told it expired",
                agent_id=agent_id,
            )
            self.store.discard_uploads(agent_id, data)
            # The page is told by its status, and the worker's request, where the router
            # waits for our word, by the refusal.
            self.routes.send(channel, Packet(UPDATE_STATUS, agent_id, {"status": finished.status}))
            raise SubmissionRefused("this task expired before it was submitted: its time ran out")
        already = await self.store.has_unit_submission(agent_id)
        if already or agent_id in self.submitting:  # read after the wait: one decides
            log.info(
                "dropped a repeated submission of agent {agent_id} ({status})",
                agent_id=agent_id,
                status=finished.status,
            )
            return
        log.info(
            "submission for agent {agent_id}, {status} before it came: stored",
            agent_id=agent_id,
            status=finished.status,
        )
        await save(finished.worker_id)

    def onboarding_submission(self, agent_id: str, save: Save) -> Deferred[Registration]:
        """The refusal of a late onboarding submission: task missing once it is kept;
        expired, not kept, once its time ran out; task missing, not kept, for an agent
        nobody knows."""
        return Deferred.fromCoroutine(self._onboarding_submission(agent_id, save))

    async def _onboarding_submission(self, agent_id: str, save: Save) -> Registration:
        finished = await self.pool.finished_agent(agent_id)
        if finished is None:
            log.warn("onboarding submitted for unknown agent {agent_id}", agent_id=agent_id)
            return Registration.refused(None, FailureReason.TASK_MISSING)
        if finished.timed_out:
            log.info(
                "onboarding submitted for agent {agent_id} after its time ran out: refused",
                agent_id=agent_id,
            )
            return Registration.refused(finished.worker_id, FailureReason.EXPIRED)
        log.info(
            "onboarding submitted for agent {agent_id}, {status} already: task missing",
            agent_id=agent_id,
            status=finished.status,
        )
        await save(finished.worker_id)
        return Registration.refused(finished.worker_id, FailureReason.TASK_MISSING)

    def live_update(self, agent_id: str) -> Deferred[None]:
        return self.pool.finished_agent(agent_id).addCallback(self._drop_live_update, agent_id)

    @staticmethod
    def _drop_live_update(finished: FinishedAgent | None, agent_id: str) -> None:
        if finished is None:
            log.warn("live update for unknown agent {agent_id}: dropped", agent_id=agent_id)
            return
        log.info(
            "live update for agent {agent_id}, {status} already: dropped",
            agent_id=agent_id,
            status=finished.status,
        )

    def shown_at_work(self, channel: Channel, agent_id: str, router_status: str) -> Deferred[None]:
        """The router shows at work an agent not held here: it is told the status stored, or
        `disconnect` for one the run never had (e.g. after a restart of the backend, the
        router still caches its predecessor's agents)."""
        d = self.pool.finished_agent(agent_id)
        return d.addCallback(self._tell, channel, agent_id, router_status)

    def _tell(
        self, finished: FinishedAgent | None, channel: Channel, agent_id: str, router_status: str
    ) -> None:
        if finished is None:
            status = Status.DISCONNECT
            log.info(
                "agent {agent_id} is {router_status} at the router but unknown here: disconnect",
                agent_id=agent_id,
                router_status=router_status,
            )
        else:
            status = finished.status
            log.info(
                "agent {agent_id} is {router_status} at the router, {status} here: told so",
                agent_id=agent_id,
                router_status=router_status,
                status=status,
            )
        self.routes.send(channel, Packet(UPDATE_STATUS, agent_id, {"status": status}))
