"""Live tasks: rooms of agents that start together, partner disconnects and timeouts.

An assignment with N units starts when its N agents are present: the ones who
come first wait in `waiting`; then all move to `in task` and the task's
`run_assignment(assignment, agents)` runs. When one leaves (disconnect,
return, expiry...) the others get `partner disconnect`. Past `timeout`
seconds, agents still working get `timeout`. If `run_assignment` raises, the
error is logged with the assignment and its agents, and the agents still
working get `expired`, which their page shows as a clear message. After a
restart of the daemon, a room whose agents are all back runs `run_assignment`
again with `assignment.resumed` set (the agents hold their past live updates).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.lifecycle import ACTIVE, LEAVING
from architect.protocol import Status
from architect.tasks.agent import Agent
from architect.tasks.hooks import BlockingRunner, Hook, call_hook

log = Logger()


@attrs.define(eq=False)
class Assignment:
    """What `run_assignment` is handed besides the agents."""

    key: Hashable
    size: int
    data: Mapping[str, Any]
    agents: list[Agent] = attrs.field(factory=list)
    started: bool = False
    resumed: bool = False  # started again by a restarted daemon: agents have their history
    ending: bool = False
    timer: IDelayedCall | None = None


class LiveTaskRunner:
    def __init__(
        self,
        clock: IReactorTime,
        run_assignment: Hook,
        run_blocking: BlockingRunner,
        timeout: float | None = None,
    ) -> None:
        self.clock = clock
        self.run_assignment = run_assignment
        self.run_blocking = run_blocking
        self.timeout = timeout
        self.assignments: dict[Hashable, Assignment] = {}
        self._of_agent: dict[str, Assignment] = {}

    def join(self, agent: Agent, key: Hashable, size: int, data: Mapping[str, Any]) -> None:
        """An agent took a seat of assignment `key`; start it when every seat is taken."""
        if agent.agent_id in self._of_agent:
            return  # the same agent again (a page reload)
        assignment = self.assignments.get(key)
        if assignment is None or assignment.started:
            assignment = self.assignments[key] = Assignment(key, size, data)
        assignment.agents.append(agent)
        self._of_agent[agent.agent_id] = assignment
        agent.add_status_listener(self._status_changed)
        if len(assignment.agents) < assignment.size:
            agent.set_status(Status.WAITING)
        else:
            self._start(assignment)

    def resume(
        self, agents: list[Agent], key: Hashable, size: int, data: Mapping[str, Any]
    ) -> None:
        """Agents of assignment `key` a restarted daemon took back, with their statuses.

        Waiting agents wait again. A room that had started runs `run_assignment` again
        (with `resumed` set) when all its seats are back; otherwise a partner left before
        the restart, and the ones here are told so.
        """
        if all(agent.status == Status.WAITING for agent in agents):
            for agent in agents:
                self.join(agent, key, size, data)
            return
        assignment = self.assignments[key] = Assignment(key, size, data, resumed=True)
        for agent in agents:
            assignment.agents.append(agent)
            self._of_agent[agent.agent_id] = assignment
            agent.add_status_listener(self._status_changed)
        if len(agents) < size:
            assignment.started = True
            self._end_with(assignment, Status.PARTNER_DISCONNECT)
            return
        self._start(assignment)

    def _start(self, assignment: Assignment) -> None:
        assignment.started = True
        for agent in assignment.agents:
            agent.set_status(Status.IN_TASK)
        if self.timeout is not None:
            assignment.timer = self.clock.callLater(self.timeout, self._time_out, assignment)
        d = call_hook(self.run_blocking, self.run_assignment, assignment, list(assignment.agents))
        d.addErrback(self._crashed, assignment)
        d.addBoth(lambda _: self._finished(assignment))

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        assignment = self._of_agent.get(agent.agent_id)
        if assignment is None or new in ACTIVE:
            return
        if not assignment.started:
            # A waiting agent left: its seat is free for the next one.
            assignment.agents.remove(agent)
            del self._of_agent[agent.agent_id]
            return
        if new in LEAVING and not assignment.ending:
            for partner in assignment.agents:
                if partner is not agent and partner.is_active:
                    partner.set_status(Status.PARTNER_DISCONNECT)
        self._forget_if_done(assignment)

    def _forget_if_done(self, assignment: Assignment) -> None:
        if any(agent.is_active for agent in assignment.agents):
            return
        if assignment.timer is not None and assignment.timer.active():
            assignment.timer.cancel()
        assignment.timer = None
        for agent in assignment.agents:
            self._of_agent.pop(agent.agent_id, None)
        if self.assignments.get(assignment.key) is assignment:
            del self.assignments[assignment.key]

    def _end_with(self, assignment: Assignment, status: str) -> None:
        assignment.ending = True
        for agent in assignment.agents:
            if agent.is_active:
                agent.set_status(status)

    def stop(self) -> None:
        """The daemon stops: no assignment times out after it (a restart counts afresh)."""
        for assignment in self.assignments.values():
            if assignment.timer is not None and assignment.timer.active():
                assignment.timer.cancel()
            assignment.timer = None

    def _time_out(self, assignment: Assignment) -> None:
        assignment.timer = None
        log.info("assignment {key} timed out", key=assignment.key)
        self._end_with(assignment, Status.TIMEOUT)

    def _crashed(self, failure: Failure, assignment: Assignment) -> None:
        log.failure(
            "run_assignment failed for assignment {key} (agents {agents})",
            failure,
            key=assignment.key,
            agents=[agent.agent_id for agent in assignment.agents],
        )
        self._end_with(assignment, Status.EXPIRED)

    def _finished(self, assignment: Assignment) -> None:
        """run_assignment returned; the timer keeps watching agents that have yet to submit."""
        self._forget_if_done(assignment)
