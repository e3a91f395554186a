"""AgentExpiry: an agent that has not submitted within `[task] assignment_duration` of its
creation becomes `expired`, so a page left open, abandoned or made up does not hold its
unit (or an onboarding seat) for good.

Every agent at work has one timer on the backend's clock, cancelled once the agent is
final otherwise. Expiry is a status change like any other: it is pushed to the agent's
router, recorded, and the unit goes back to the pool as `lifecycle.unit_status_after`
says. An agent taken back at a restart is watched from its creation as stored, so the
window goes on counting across the restart (one whose window ended meanwhile expires on
the clock's next turn).
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from architect.lifecycle import FINAL
from architect.protocol import Status
from architect.storage import StoredAgent
from architect.tasks.agent import Agent

log = Logger()

# A submission under way when the time runs out came in time: it is waited for, and the
# agent expires only if it could not be stored (its page was told to submit again).
STORING_GRACE = 10.0
# Database times are the clock's, but a timer's sum may round a hair below the window.
TIME_SLACK = 0.001


class AgentExpiry:
    def __init__(self, clock: IReactorTime, duration: float) -> None:
        self.clock = clock
        self.duration = duration  # [task] assignment_duration, seconds
        self._timers: dict[str, IDelayedCall] = {}  # agent id -> its timer, while at work

    def __len__(self) -> int:
        return len(self._timers)

    def watch(self, agent: Agent, created_at: float | None = None) -> None:
        """Expire `agent` `duration` seconds after `created_at` (default: now) unless it is
        final by then. Never at once: a window already over ends on the clock's next turn,
        once whoever made the agent has put it to work."""
        if not agent.is_active or agent.agent_id in self._timers:
            return
        now = self.clock.seconds()
        start = now if created_at is None else created_at
        self._arm(agent, max(0.0, start + self.duration - now))
        agent.add_status_listener(self._status_changed)

    def timed_out(self, stored: StoredAgent) -> bool:
        """Whether a stored agent expired because its time ran out (an agent can be
        `expired` for other reasons: its task's code failed)."""
        if stored.status != Status.EXPIRED:
            return False
        return stored.updated_at - stored.created_at >= self.duration - TIME_SLACK

    def stop(self) -> None:
        """The backend stops: no agent expires in a process that no longer serves it."""
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            if timer.active():
                timer.cancel()

    def _arm(self, agent: Agent, delay: float) -> None:
        self._timers[agent.agent_id] = self.clock.callLater(delay, self._ran_out, agent)

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        if new not in FINAL:
            return
        timer = self._timers.pop(agent.agent_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _ran_out(self, agent: Agent) -> None:
        del self._timers[agent.agent_id]
        if not agent.is_active:
            return
        if agent.submitted:
            self._arm(agent, STORING_GRACE)
            return
        log.info(
            "agent {agent_id} did not submit within [task] assignment_duration"
            " ({duration} s): expired",
            agent_id=agent.agent_id,
            duration=self.duration,
        )
        agent.set_status(Status.EXPIRED)
