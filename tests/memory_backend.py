"""An in-memory worker pool and submission store, for testing the ClientIOHandler alone.

`MemoryWorkerPool` implements the `WorkerPool` interface with units in a list,
workers by name and everything in memory, synchronously (a task.Clock drives
it). The real pool is `architect.backend.workers.StoredWorkerPool`;
test_pool_contract.py runs the same behaviour tests against both, so that this one
answers as the real one does. What statuses do to units comes from
`architect.lifecycle`, as in the real pool. Like the real pool, it holds the agents at
work (`agents`) and drops one once it is final; `made` keeps every agent, as the real
pool's database does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from architect.backend.agent_registry import new_agent_id
from architect.backend.registration import (
    BadRegistration,
    FinishedAgent,
    Registration,
    worker_identity_problem,
)
from architect.lifecycle import COUNTED, FINAL, AgentKind, UnitStatus, unit_status_after
from architect.protocol import FailureReason, Status
from architect.tasks.agent import Agent
from architect.tasks.history import LiveLimits

log = Logger()


# A task's onboarding check: a plain value, a Deferred, or a coroutine (async def).
OnboardingCheck = Callable[[dict[str, Any]], "bool | Deferred[bool] | Coroutine[Any, Any, bool]"]


def _call_hook(
    hook: Callable[[dict[str, Any]], bool | Deferred[bool] | Coroutine[Any, Any, bool]],
    data: dict[str, Any],
) -> Deferred[bool]:
    try:
        result = hook(data)
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Coroutine):
        return Deferred.fromCoroutine(result)
    return succeed(bool(result))


@attrs.define(eq=False)
class WorkerRecord:
    worker_id: str
    worker_name: str
    agents: list[Agent] = attrs.field(factory=list)
    onboarded: bool | None = None  # None: not tried yet
    worked_on: set[int] = attrs.field(factory=set)  # units it has had an agent on


@attrs.define(eq=False)
class UnitSlot:
    index: int
    assignment_data: dict[str, Any]
    agent: Agent | None = None
    completed: bool = False


class MemoryWorkerPool:
    """Units from a list, one worker each, done once; workers by name; state in memory."""

    def __init__(
        self,
        clock: IReactorTime,
        units: Iterable[dict[str, Any]],
        *,
        onboarding_data: dict[str, Any] | None = None,
        check_onboarding: OnboardingCheck | None = None,
        max_concurrent: int | None = None,
        max_units_per_worker: int | None = None,
        blocked_workers: Sequence[str] = (),
        live_limits: LiveLimits | None = None,
    ) -> None:
        self.clock = clock
        self.live_limits = live_limits or LiveLimits()
        self.units = [UnitSlot(i, copy.deepcopy(data)) for i, data in enumerate(units)]
        self.onboarding_data = onboarding_data or {}
        self.check_onboarding = check_onboarding
        self.max_concurrent = max_concurrent
        self.max_units_per_worker = max_units_per_worker
        self.blocked_workers = frozenset(blocked_workers)
        self.workers: dict[str, WorkerRecord] = {}  # by worker name
        self.workers_by_id: dict[str, WorkerRecord] = {}
        self.agents: dict[str, Agent] = {}  # at work
        self.made: dict[str, Agent] = {}  # every agent, finished ones too
        self.registrations: dict[str, Agent] = {}  # agent_registration_id -> latest agent
        self.agent_units: dict[str, UnitSlot] = {}
        self.pending_provider_data: dict[str, dict[str, Any]] = {}  # onboarding agent -> data

    # --- WorkerPool ---

    def get_agent(self, agent_id: str) -> Agent | None:
        return self.agents.get(agent_id)

    def finished_agent(self, agent_id: str) -> Deferred[FinishedAgent | None]:
        agent = self.made.get(agent_id)
        if agent is None or agent.is_active or agent_id in self.agents:
            return succeed(None)
        return succeed(FinishedAgent(agent_id, agent.worker_id, agent.status))

    def recently_finished(self) -> Deferred[dict[str, str]]:
        return succeed(
            {
                agent_id: agent.status
                for agent_id, agent in self.made.items()
                if not agent.is_active and agent_id not in self.agents
            }
        )

    def stop(self) -> None:
        pass  # no timers of its own

    def register(self, provider_data: dict[str, Any]) -> Deferred[Registration]:
        return maybeDeferred(self._register, provider_data)

    def submit_onboarding(
        self, agent: Agent, onboarding_data: dict[str, Any]
    ) -> Deferred[Registration]:
        worker = self.workers_by_id.get(agent.worker_id)
        if worker is None or not agent.is_onboarding or agent.status != Status.ONBOARDING:
            return succeed(Registration.refused(agent.worker_id, FailureReason.TASK_MISSING))
        if self.check_onboarding is None:
            passed: Deferred[bool] = succeed(True)
        else:
            passed = _call_hook(self.check_onboarding, onboarding_data)
        return passed.addCallbacks(
            self._onboarding_checked,
            self._onboarding_check_failed,
            callbackArgs=(worker, agent),
            errbackArgs=(worker, agent),
        )

    # --- registration ---

    def _register(self, provider_data: dict[str, Any]) -> Registration:
        worker_name = provider_data.get("worker_name")
        if not isinstance(worker_name, str) or not worker_name:
            raise BadRegistration("provider_data has no worker_name")
        provider_type = provider_data.get("provider_type") or "mock"
        if not isinstance(provider_type, str):  # (as the real pool: workers.py)
            raise BadRegistration("provider_data's provider_type must be a string")
        problem = worker_identity_problem(worker_name, provider_type)
        if problem is not None:
            return Registration.refused(None, problem)
        worker = self._worker(worker_name)
        registration_id = provider_data.get("agent_registration_id")
        if isinstance(registration_id, str) and registration_id in self.registrations:
            again = self._reregister(worker, self.registrations[registration_id])
            if again is not None:
                return again
        if worker.worker_name in self.blocked_workers or worker.onboarded is False:
            return Registration.refused(worker.worker_id, FailureReason.NOT_QUALIFIED)
        active = [a for a in worker.agents if a.is_active]
        if self.max_concurrent is not None and len(active) >= self.max_concurrent:
            return Registration.refused(worker.worker_id, FailureReason.TOO_MANY_CONCURRENT)
        counted = [a for a in worker.agents if not a.is_onboarding and a.status in COUNTED]
        if self.max_units_per_worker is not None and len(counted) >= self.max_units_per_worker:
            return Registration.refused(worker.worker_id, FailureReason.MAX_UNITS)
        reg_id = registration_id if isinstance(registration_id, str) else None
        if self.check_onboarding is not None and worker.onboarded is None:
            if self._free_unit(worker) is None:  # no onboarding without work after it
                return Registration.refused(worker.worker_id, FailureReason.NO_WORK)
            return self._start_onboarding(worker, reg_id, provider_data)
        return self._assign(worker, reg_id)

    def _worker(self, worker_name: str) -> WorkerRecord:
        worker = self.workers.get(worker_name)
        if worker is None:
            worker = self.workers[worker_name] = WorkerRecord(new_agent_id(), worker_name)
            self.workers_by_id[worker.worker_id] = worker
        return worker

    def _reregister(self, worker: WorkerRecord, agent: Agent) -> Registration | None:
        """The same agent again, a refusal, or None: the registration is taken afresh."""
        if agent.worker_id != worker.worker_id:
            log.warn(
                "worker {name} used the registration id of agent {agent_id}: refused",
                name=worker.worker_name,
                agent_id=agent.agent_id,
            )
            return Registration.refused(worker.worker_id, FailureReason.TASK_MISSING)
        if not agent.is_active:
            if agent.is_onboarding:
                return None  # onboarding ended: the stages decide afresh
            return Registration.refused(worker.worker_id, FailureReason.TASK_MISSING)
        return Registration(
            worker_id=worker.worker_id,
            agent=agent,
            init_task_data=agent.reconnect_task_data(),
            reconnected=True,
        )

    def _start_onboarding(
        self, worker: WorkerRecord, registration_id: str | None, provider_data: dict[str, Any]
    ) -> Registration:
        agent = self._new_agent(
            worker,
            new_agent_id("onboarding-"),
            self.onboarding_data,
            registration_id,
            AgentKind.ONBOARDING,
        )
        self.pending_provider_data[agent.agent_id] = copy.deepcopy(provider_data)
        agent.set_status(Status.ONBOARDING)
        return Registration(worker.worker_id, agent, copy.deepcopy(agent.init_task_data))

    def _onboarding_checked(self, passed: bool, worker: WorkerRecord, agent: Agent) -> Registration:
        self.pending_provider_data.pop(agent.agent_id, None)
        if not passed:
            worker.onboarded = False
            agent.set_status(Status.REJECTED)
            return Registration.refused(worker.worker_id, FailureReason.NOT_QUALIFIED)
        worker.onboarded = True
        agent.set_status(Status.APPROVED)
        return self._assign(worker, agent.registration_id)

    def _onboarding_check_failed(
        self, failure: Any, worker: WorkerRecord, agent: Agent
    ) -> Registration:
        log.failure(
            "the onboarding check failed for agent {agent_id}", failure, agent_id=agent.agent_id
        )
        self.pending_provider_data.pop(agent.agent_id, None)
        agent.set_status(Status.EXPIRED)  # the worker may try again: nothing is recorded
        return Registration.refused(worker.worker_id, FailureReason.NO_WORK)

    def _free_unit(self, worker: WorkerRecord) -> UnitSlot | None:
        """The first unit nobody holds or did, that this worker never had."""
        return next(
            (
                s
                for s in self.units
                if not s.completed and s.agent is None and s.index not in worker.worked_on
            ),
            None,
        )

    def _assign(self, worker: WorkerRecord, registration_id: str | None) -> Registration:
        slot = self._free_unit(worker)
        if slot is None:
            return Registration.refused(worker.worker_id, FailureReason.NO_WORK)
        agent = self._new_agent(worker, new_agent_id(), slot.assignment_data, registration_id)
        slot.agent = agent
        worker.worked_on.add(slot.index)
        self.agent_units[agent.agent_id] = slot
        agent.set_status(Status.IN_TASK)
        return Registration(worker.worker_id, agent, copy.deepcopy(agent.init_task_data))

    def _new_agent(
        self,
        worker: WorkerRecord,
        agent_id: str,
        init_task_data: dict[str, Any],
        registration_id: str | None,
        kind: str = AgentKind.UNIT,
    ) -> Agent:
        agent = Agent(
            self.clock,
            agent_id,
            worker.worker_id,
            copy.deepcopy(init_task_data),
            registration_id=registration_id,
            kind=kind,
            live_limits=self.live_limits,
        )
        agent.add_status_listener(self._status_changed)
        worker.agents.append(agent)
        self.agents[agent_id] = agent
        self.made[agent_id] = agent
        if registration_id is not None:
            self.registrations[registration_id] = agent
        return agent

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        if new in FINAL and self.agents.get(agent.agent_id) is agent:
            del self.agents[agent.agent_id]
        slot = self.agent_units.get(agent.agent_id)
        if slot is None or slot.agent is not agent:
            return
        change = unit_status_after(old, new)
        if change == UnitStatus.COMPLETED:
            slot.completed = True
        elif change == UnitStatus.AVAILABLE:
            slot.agent = None  # disconnected, expired...: the unit is free for someone else
            log.info(
                "unit {index} is free again ({agent_id}: {status})",
                index=slot.index,
                agent_id=agent.agent_id,
                status=new,
            )


@attrs.frozen
class StoredSubmission:
    kind: str  # "unit" or "metadata"
    agent_id: str
    worker_id: str | None
    data: dict[str, Any]


class MemoryStore:
    """Keeps submissions in a list, in arrival order."""

    def __init__(self) -> None:
        self.submissions: list[StoredSubmission] = []

    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None = None,
        completes: bool = False,
    ) -> Deferred[None]:
        return self._keep("unit", agent_id, worker_id, data)

    def save_onboarding(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None = None,
    ) -> Deferred[None]:
        return self._keep("onboarding", agent_id, worker_id, data)

    def save_metadata(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None = None,
    ) -> Deferred[None]:
        return self._keep("metadata", agent_id, worker_id, data)

    def _keep(
        self, kind: str, agent_id: str, worker_id: str | None, data: dict[str, Any]
    ) -> Deferred[None]:
        self.submissions.append(StoredSubmission(kind, agent_id, worker_id, copy.deepcopy(data)))
        return succeed(None)

    def has_unit_submission(self, agent_id: str) -> Deferred[bool]:
        return succeed(bool(self.of_agent(agent_id, "unit")))

    def discard_uploads(self, agent_id: str, data: dict[str, Any]) -> None:
        pass  # it keeps no files

    def of_agent(self, agent_id: str, kind: str | None = None) -> list[StoredSubmission]:
        return [
            s
            for s in self.submissions
            if s.agent_id == agent_id and (kind is None or s.kind == kind)
        ]
