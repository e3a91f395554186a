"""TaskRunner: puts each new unit agent to work the way its task's kind says.

- static: nothing to drive; `validate_submission(agent, data)`, when the task has
  it, judges each submission after it is stored: False makes the agent
  `soft_rejected` (the submission is kept).
- live: the agent joins its assignment's room (`LiveTaskRunner`); when the task
  also has PROCEDURES, calls go to them and other live updates to `act()`.
  Agents a restarted daemon takes back are put to work the same way, and their
  rooms start again (`Assignment.resumed`).
- remote procedure: the agent's live updates go to the task's procedures.

The runner keeps each agent's unit (for the logs) while the agent works, and until the
task has judged its submission.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.lifecycle import FINAL
from architect.protocol import Status
from architect.tasks.agent import Agent
from architect.tasks.definition import LIVE, REMOTE_PROCEDURE, TaskDefinition
from architect.tasks.hooks import BlockingRunner, call_hook
from architect.tasks.live import LiveTaskRunner
from architect.tasks.remote_procedure import ProcedureDispatcher

log = Logger()


class HeldUnit(Protocol):
    """What the runner reads of the unit an agent holds (a stored unit is one)."""

    @property
    def id(self) -> int: ...

    @property
    def assignment_id(self) -> int: ...

    @property
    def assignment_data(self) -> Any: ...


class TaskRunner:
    def __init__(
        self,
        clock: IReactorTime,
        task: TaskDefinition,
        run_blocking: BlockingRunner,
        units_per_assignment: int = 1,
        timeout: float | None = None,
    ) -> None:
        self.task = task
        self.run_blocking = run_blocking
        self.units_per_assignment = units_per_assignment
        self.live: LiveTaskRunner | None = None
        self.procedures: ProcedureDispatcher | None = None
        self.units: dict[str, int] = {}  # agent id -> unit id, for the logs, while it works
        self._judging = 0  # validate_submission calls under way
        self._when_judged: list[Deferred[None]] = []  # judged()'s waiters
        if task.kind == LIVE:
            assert task.run_assignment is not None
            self.live = LiveTaskRunner(clock, task.run_assignment, run_blocking, timeout or None)
        if task.kind == REMOTE_PROCEDURE or (task.kind == LIVE and task.procedures):
            self.procedures = ProcedureDispatcher(task.procedures, run_blocking)

    def agent_assigned(self, agent: Agent, unit: HeldUnit) -> None:
        """A new agent holds `unit`."""
        self._keep_unit(agent, unit)
        self._attach_procedures(agent)
        if self.live is not None:
            self.live.join(
                agent, unit.assignment_id, self.units_per_assignment, unit.assignment_data
            )

    def agents_resumed(self, resumed: Sequence[tuple[Agent, HeldUnit | None]]) -> None:
        """Agents a restarted daemon took back go to work again; a live assignment whose
        agents were all in the task starts again, `resumed`, with the same agents."""
        rooms: dict[int, tuple[HeldUnit, list[Agent]]] = {}
        for agent, unit in resumed:
            if unit is None:
                continue  # onboarding: nothing runs until it is submitted
            self._keep_unit(agent, unit)
            self._attach_procedures(agent)
            rooms.setdefault(unit.assignment_id, (unit, []))[1].append(agent)
        if self.live is None:
            return
        for key, (unit, agents) in rooms.items():
            self.live.resume(agents, key, self.units_per_assignment, unit.assignment_data)

    def stop(self) -> None:
        """The daemon stops: its live assignments' timers with it."""
        if self.live is not None:
            self.live.stop()

    def _keep_unit(self, agent: Agent, unit: HeldUnit) -> None:
        self.units[agent.agent_id] = unit.id
        agent.add_status_listener(self._status_changed)

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        # A submission makes the agent completed, then is judged (unit_submitted): the
        # unit is kept for that verdict's log.
        judged_next = new == Status.COMPLETED and self.task.validate_submission is not None
        if new in FINAL and not judged_next:
            self.units.pop(agent.agent_id, None)

    def _attach_procedures(self, agent: Agent) -> None:
        if self.procedures is None:
            return
        if self.live is not None:
            self.procedures.attach_beside_act(agent)  # other updates still go to act()
        else:
            self.procedures.attach(agent)

    def unit_submitted(self, agent: Agent, data: dict[str, Any]) -> Deferred[None] | None:
        """The agent's submission is stored: the task may judge it."""
        hook = self.task.validate_submission
        if hook is None:
            return None
        unit = self.units.get(agent.agent_id)
        d = call_hook(self.run_blocking, hook, agent, data)

        def judged(valid: Any) -> None:
            if valid is False:
                log.info("submission of agent {agent_id} judged invalid", agent_id=agent.agent_id)
                agent.set_status(Status.SOFT_REJECTED)

        def failed(failure: Failure) -> None:
            log.failure(
                "validate_submission failed for agent {agent_id} (unit {unit}); the submission"
                " is kept as it is",
                failure,
                agent_id=agent.agent_id,
                unit=unit,
            )

        def forget(result: object) -> object:
            self.units.pop(agent.agent_id, None)  # judged: completed for good, or not
            self._judging -= 1  # whatever came of it, judged() does not wait on it forever
            if self._judging == 0:
                waiters, self._when_judged = self._when_judged, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        self._judging += 1
        return d.addCallbacks(judged, failed).addBoth(forget)

    def judged(self) -> Deferred[None]:
        """Fires once no submission is being judged: each one handed to
        validate_submission so far has its verdict set on its agent."""
        if self._judging == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._when_judged.append(waiter)
        return waiter
