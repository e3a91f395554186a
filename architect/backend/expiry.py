"""AgentExpiry: an agent that has not submitted within `[task] assignment_duration` of its
creation becomes `expired`, so a page left open, abandoned or made up does not hold its
unit (or an onboarding seat) for good.

Every agent at work has a deadline; one timer on the backend's clock waits for the
earliest (a heap of deadlines, not a reactor timer per agent: with thousands of agents
at work, each timer's insertion and cancellation was a visible part of a registration's
cost). An agent final otherwise is forgotten, its heap entry skipped once it comes up.
Expiry is a status change like any other: it is pushed to the agent's
router, recorded, and the unit goes back to the pool as `lifecycle.unit_status_after`
says. An agent taken back at a restart is watched from its creation as stored, so the
window goes on counting across the restart (one whose window ended meanwhile expires on
the clock's next turn).
"""

from __future__ import annotations

import heapq
from itertools import count

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
# Entries of agents no longer at work the heap of deadlines may hold beyond twice theirs.
COMPACT_SLACK = 64


class AgentExpiry:
    def __init__(self, clock: IReactorTime, duration: float) -> None:
        self.clock = clock
        self.duration = duration  # [task] assignment_duration, seconds
        # agent id -> (its entry's number, the agent), while at work; the heap holds
        # (deadline, entry number, agent id), entries of agents no longer here skipped.
        self._watched: dict[str, tuple[int, Agent]] = {}
        self._deadlines: list[tuple[float, int, str]] = []
        self._numbers = count()
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, agent: Agent, created_at: float | None = None) -> None:
        """Expire `agent` `duration` seconds after `created_at` (default: now) unless it is
        final by then. Never at once: a window already over ends on the clock's next turn,
        once whoever made the agent has put it to work."""
        if not agent.is_active or agent.agent_id in self._watched:
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
        self._forget_all()

    def _forget_all(self) -> None:
        self._watched, self._deadlines = {}, []
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm(self, agent: Agent, delay: float) -> None:
        number = next(self._numbers)
        self._watched[agent.agent_id] = (number, agent)
        heapq.heappush(self._deadlines, (self.clock.seconds() + delay, number, agent.agent_id))
        self._wait_for_first()

    def _is_current(self, entry: tuple[float, int, str]) -> bool:
        watched = self._watched.get(entry[2])
        return watched is not None and watched[0] == entry[1]

    def _wait_for_first(self) -> None:
        """The one timer, set for the earliest deadline still current."""
        deadlines = self._deadlines
        while deadlines and not self._is_current(deadlines[0]):
            heapq.heappop(deadlines)
        timer = self._timer
        if not deadlines:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        first = deadlines[0][0]
        if timer is not None and timer.active():
            if timer.getTime() <= first:
                return  # it fires first, and waits again for what is left
            timer.cancel()
        self._timer = self.clock.callLater(max(0.0, first - self.clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        due: list[Agent] = []  # taken first: a deadline set meanwhile waits for a later turn
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            entry = heapq.heappop(deadlines)
            if self._is_current(entry):
                due.append(self._watched.pop(entry[2])[1])
        for agent in due:
            self._ran_out(agent)
        self._wait_for_first()

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        if new in FINAL and self._watched.pop(agent.agent_id, None) is not None:
            # Its entry is skipped when it comes up; the heap is rebuilt once such entries
            # are most of it, so that it stays within twice the agents at work, and with
            # no agent left at work, no timer is left either.
            if not self._watched:
                self._forget_all()
            elif len(self._deadlines) > 2 * len(self._watched) + COMPACT_SLACK:
                self._deadlines = [e for e in self._deadlines if self._is_current(e)]
                heapq.heapify(self._deadlines)

    def _ran_out(self, agent: Agent) -> None:
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
