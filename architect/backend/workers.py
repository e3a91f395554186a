"""The worker pool: who gets which unit.

`WorkerPool` is the interface the ClientIOHandler uses; every decision comes
back as a Deferred.

`StoredWorkerPool` keeps everything in the database and answers a
registration through staged checks, in this order:

0. find or create the worker from `provider_data` (`worker_name`, `provider_type`);
   a request whose `agent_registration_id` was seen before in this run is a
   reconnection instead: the same agent, its data and `past_live_updates`
   while it is active, the task-missing refusal once it is completed or cleared, the
   expired one once its time ran out (then it is no longer held: the database says so);
1. qualifications: every requirement of the task, and (with onboarding on) not
   having failed onboarding before;
2. limits: `allowed_concurrent` agents in progress, `maximum_units_per_worker`
   units done or in progress;
3. the task's `worker_can_do_unit(worker, unit)` over the available units of
   assignments the worker has not worked on;
4. onboarding, for a worker without the onboarding qualification: an
   onboarding agent with the task's `onboarding_data(worker)`; its submission
   goes through `validate_onboarding(worker, data)`, which grants the
   qualification as passed (1) or failed (0);
5. the atomic reservation of the first still-available unit.

Without `worker_can_do_unit` and onboarding, stages 0 to 5 need nothing but the
database, and run there as one transaction (`Database.register_for_work`): one
trip to the database thread, only the reserved unit's data decoded. Otherwise
the stages of one worker run one registration at a time (a lock per worker),
so simultaneous requests of one worker cannot pass a limit together; the
reservation itself is atomic in the database, so no two workers share a unit.

Task hooks run through `call_hook`, so a blocking hook runs in a thread. A hook
that raises is logged with the worker and unit; the worker gets a refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from architect.backend.agent_registry import AgentRegistry, new_agent_id
from architect.backend.expiry import AgentExpiry
from architect.backend.onboarding import PASSED, Onboarding
from architect.backend.recorder import AgentRecorder
from architect.backend.registration import (
    BadRegistration,
    FinishedAgent,
    Registration,
    worker_identity_problem,
)
from architect.backend.resume import finished_lately
from architect.backend.worker_locks import WorkerLocks
from architect.config import TaskConfig
from architect.copies import json_copy
from architect.lifecycle import FINAL, AgentKind, unit_status_if_lost
from architect.nul import NUL
from architect.protocol import FailureReason, Status
from architect.qualifications import BLOCKED, meets_all
from architect.storage import (
    CandidateUnit,
    Database,
    StoredAgent,
    TaskRun,
    Unit,
    WorkAnswer,
    Worker,
    WorkRequest,
)
from architect.tasks.agent import Agent
from architect.tasks.definition import TaskDefinition, UnitInfo, WorkerInfo
from architect.tasks.history import LiveLimits
from architect.tasks.hooks import BlockingRunner, call_hook

log = Logger()

# A registration's worker: (provider type, worker name, agent registration id or None).
Identity = tuple[str, str, str | None]
T = TypeVar("T")

# How many units' worker_can_do_unit verdicts are asked for at once.
HOOK_BATCH = 20
CANDIDATE_PAGE = 100  # units read from the database at a time by one registration
# The provider a registration without provider_type is taken to come from.
DEFAULT_PROVIDER = "mock"


async def prepare_task_run(
    database: Database, settings: TaskConfig, units: Sequence[dict[str, Any]]
) -> TaskRun:
    """The named task run, continued or created, with any assignments it does not hold yet."""
    run = await database.find_or_create_task_run(settings.name, settings.summary())
    added = await database.add_assignments(run.id, list(units), settings.units_per_assignment)
    log.info(
        "task run {name} (id {id}): {added} new assignments, {kept} already stored",
        name=run.name,
        id=run.id,
        added=added,
        kept=len(units) - added,
    )
    return run


def _unit_info(unit: Unit | CandidateUnit) -> UnitInfo:
    """The unit as a hook sees it, with a copy of its data of the hook's own."""
    if isinstance(unit, CandidateUnit):
        data = unit.assignment_data()  # decoded now: only for the units a hook is asked about
    else:
        data = json_copy(unit.assignment_data)
    return UnitInfo(
        unit_id=str(unit.id),
        assignment_index=unit.assignment_index,
        unit_index=unit.unit_index,
        assignment_data=data,
    )


class StoredWorkerPool:
    """The registration pipeline over a Database, for one task run."""

    def __init__(
        self,
        clock: IReactorTime,
        database: Database,
        task_run: TaskRun,
        settings: TaskConfig,
        task: TaskDefinition,
        run_blocking: BlockingRunner,
        on_unit_agent: Callable[[Agent, Unit], None] | None = None,
        live_limits: LiveLimits | None = None,
    ) -> None:
        self.clock = clock
        self.on_unit_agent = on_unit_agent  # the task runner puts new unit agents to work
        self.database = database
        self.task_run = task_run
        self.settings = settings
        self.ini_settings = settings  # the ini file's, when settings hold run-time changes
        self.task = task
        self.run_blocking = run_blocking
        self.recorder = AgentRecorder(database, settings.return_units)
        self.expiry = AgentExpiry(clock, settings.assignment_duration)
        self.registry = AgentRegistry(clock, self.recorder, live_limits, self.expiry)
        self.onboarding = Onboarding(
            database, self.registry, task, run_blocking, settings.onboarding_qualification
        )
        self.locks = WorkerLocks()

    # --- WorkerPool ---

    def get_agent(self, agent_id: str) -> Agent | None:
        return self.registry.get(agent_id)

    def finished_agent(self, agent_id: str) -> Deferred[FinishedAgent | None]:
        return Deferred.fromCoroutine(self._finished_agent(agent_id))

    def register(self, provider_data: dict[str, Any]) -> Deferred[Registration]:
        try:
            identity = self._identity(provider_data)
            if isinstance(identity, Registration):
                return succeed(identity)
            if self._database_decides():
                return self._register_in_one(*identity)
        except Exception:
            return fail()
        return Deferred.fromCoroutine(self._register_in_stages(*identity))

    def submit_onboarding(
        self, agent: Agent, onboarding_data: dict[str, Any]
    ) -> Deferred[Registration]:
        return Deferred.fromCoroutine(self._submit_onboarding(agent, onboarding_data))

    def settled(self) -> Deferred[None]:
        """Fires once the status and live-update writes issued so far are committed."""
        return self.recorder.settled()

    def recently_finished(self) -> Deferred[dict[str, str]]:
        return finished_lately(self.database, self.task_run.id, self.clock)

    def stop(self) -> None:
        self.expiry.stop()

    # --- the pipeline ---

    def _identity(self, provider_data: dict[str, Any]) -> Identity | Registration:
        """(provider type, worker name, registration id) of a registration, or its refusal;
        BadRegistration for what no router sends."""
        worker_name = provider_data.get("worker_name")
        if not isinstance(worker_name, str) or not worker_name:
            raise BadRegistration("provider_data has no worker_name")
        provider_type = provider_data.get("provider_type") or DEFAULT_PROVIDER
        if not isinstance(provider_type, str):
            raise BadRegistration("provider_data's provider_type must be a string")
        problem = worker_identity_problem(worker_name, provider_type)
        if problem is not None:
            log.info("refused a worker id: {name!r}", name=worker_name[:120])
            return Registration.refused(None, problem)
        registration_id = provider_data.get("agent_registration_id")
        if not isinstance(registration_id, str) or not registration_id:
            registration_id = None
        elif NUL in registration_id:  # from any router: architect/nul.py
            raise BadRegistration("provider_data's agent_registration_id holds a NUL")
        return provider_type, worker_name, registration_id

    async def _register_in_stages(
        self, provider_type: str, worker_name: str, registration_id: str | None
    ) -> Registration:
        # Stage 0: the worker (one transaction: simultaneous first visits find one row).
        worker = await self.database.find_or_create_worker(provider_type, worker_name)
        async with self.locks.of(worker.id):
            if registration_id is not None:
                again = await self._reconnect(worker, registration_id)
                if again is not None:
                    return again
            return await self._find_work(worker, registration_id)

    def _database_decides(self) -> bool:
        """Whether stages 1 to 5 need only the database (no worker_can_do_unit, no
        onboarding): then they run in it, as one transaction (register_for_work)."""
        return self.task.worker_can_do_unit is None and not self.settings.onboarding

    def _register_in_one(
        self, provider_type: str, worker_name: str, registration_id: str | None
    ) -> Deferred[Registration]:
        """Stages 0 to 5 in one transaction; a registration id the run knows goes through
        stage 6 as before (under the worker's lock), then back to the one transaction.
        The common path is plain callbacks: no coroutine to run per registration."""
        answer = self.database.register_for_work(
            self._work_request(provider_type, worker_name, registration_id)
        )
        return answer.addCallback(self._after_one, registration_id)

    def _after_one(
        self, answer: WorkAnswer, registration_id: str | None
    ) -> Registration | Deferred[Registration]:
        if answer.known_registration:
            assert registration_id is not None  # known: it was looked up
            return Deferred.fromCoroutine(self._known_registration(answer.worker, registration_id))
        if answer.unit is not None and self.task.init_data is None:
            unit, data = answer.unit, answer.unit.assignment_data
            if isinstance(data, dict) and unit.agent_id is not None:  # else as below: refused
                # Decoded just now for this registration alone (the agent keeps a copy).
                agent = self._at_work(answer.worker, unit.agent_id, unit, data, registration_id)
                return Registration(str(answer.worker.id), agent, json_copy(agent.init_task_data))
        return Deferred.fromCoroutine(self._answered(answer, registration_id))

    async def _known_registration(self, worker: Worker, registration_id: str) -> Registration:
        async with self.locks.of(worker.id):
            again = await self._reconnect(worker, registration_id)
            if again is not None:
                return again
            return await self._find_work(worker, registration_id)

    def _work_request(
        self,
        provider_type: str,
        worker_name: str,
        registration_id: str | None,
        look_up_registration: bool = True,
    ) -> WorkRequest:
        settings = self.settings
        requirements = settings.qualifications

        def qualified(held: Mapping[str, Any]) -> bool:  # stage 1, in the database thread
            return BLOCKED not in held and meets_all(requirements, held)

        return WorkRequest(
            task_run_id=self.task_run.id,
            provider_type=provider_type,
            worker_name=worker_name,
            agent_id=new_agent_id(),
            agent_registration_id=registration_id,
            look_up_registration=look_up_registration,
            qualified=qualified,
            allowed_concurrent=settings.allowed_concurrent,
            maximum_units_per_worker=settings.maximum_units_per_worker,
            status=Status.IN_TASK,
            init_from_assignment=self.task.init_data is None,
        )

    async def _answered(self, answer: WorkAnswer, registration_id: str | None) -> Registration:
        worker = answer.worker
        if answer.unit is None:
            return Registration.refused(str(worker.id), answer.failure_reason or "")
        agent_id = answer.unit.agent_id
        assert agent_id is not None  # reserved for it
        agent = await self._put_to_work(worker, agent_id, answer.unit, registration_id)
        return Registration(str(worker.id), agent, json_copy(agent.init_task_data))

    async def _reconnect(self, worker: Worker, registration_id: str) -> Registration | None:
        """Stage 6: the agent this registration id had, or None to go through the stages."""
        worker_id = str(worker.id)
        agent = self.registry.by_registration(registration_id)
        if agent is None:
            stored = await self.database.find_agent_by_registration_id(registration_id)
            if stored is None or stored.task_run_id != self.task_run.id:
                return None
            if stored.worker_id != worker.id:
                return self._stolen_registration(worker, stored.agent_id)
            if stored.kind == AgentKind.ONBOARDING:
                return None  # onboarding ended: the stages decide afresh
            # Finished: in this life of the daemon (no longer held), or in an earlier one
            # (completed, expired, or cleared at the restart). As for a held agent that is final.
            return Registration.refused(worker_id, self._no_longer_yours(stored))
        if agent.worker_id != worker_id:
            return self._stolen_registration(worker, agent.agent_id)
        if agent.is_active:
            return Registration(
                worker_id=worker_id,
                agent=agent,
                init_task_data=agent.reconnect_task_data(),
                reconnected=True,
            )
        if agent.is_onboarding:
            return None
        return Registration.refused(worker_id, FailureReason.TASK_MISSING)

    def _no_longer_yours(self, stored: StoredAgent) -> str:
        """Why a finished unit agent's page gets no agent: its time ran out, or it is gone."""
        if self.expiry.timed_out(stored):
            return FailureReason.EXPIRED
        return FailureReason.TASK_MISSING

    def _stolen_registration(self, worker: Worker, agent_id: str) -> Registration:
        log.warn(
            "worker {name} used the registration id of agent {agent_id}: refused",
            name=worker.worker_name,
            agent_id=agent_id,
        )
        return Registration.refused(str(worker.id), FailureReason.TASK_MISSING)

    async def _find_work(self, worker: Worker, registration_id: str | None) -> Registration:
        """Stages 1 to 5."""
        if self._database_decides():
            request = self._work_request(
                worker.provider_type, worker.worker_name, registration_id, False
            )
            answer = await self.database.register_for_work(request)
            return await self._answered(answer, registration_id)
        worker_id = str(worker.id)
        settings = self.settings
        info = await self._worker_info(worker)
        held = info.qualifications
        # 1. qualifications (a blocked worker has none that count)
        if BLOCKED in held or not meets_all(settings.qualifications, held):
            return Registration.refused(worker_id, FailureReason.NOT_QUALIFIED)
        needs_onboarding = False
        if settings.onboarding:
            if settings.onboarding_qualification not in held:
                needs_onboarding = True
            elif held[settings.onboarding_qualification] != PASSED:
                return Registration.refused(worker_id, FailureReason.NOT_QUALIFIED)
        # 2. limits
        if settings.allowed_concurrent:
            active = await self.database.count_active_agents(worker.id, self.task_run.id)
            if active >= settings.allowed_concurrent:
                return Registration.refused(worker_id, FailureReason.TOO_MANY_CONCURRENT)
        if settings.maximum_units_per_worker:
            done = await self.database.count_worker_units(self.task_run.id, worker.id)
            if done >= settings.maximum_units_per_worker:
                return Registration.refused(worker_id, FailureReason.MAX_UNITS)
        # 3. the units this worker may do, asked of the task as they are needed
        candidates = self._candidates(worker)
        if needs_onboarding:
            # 4. onboarding first, provided some unit is there for the worker afterwards
            if await self._first_doable(info, candidates, self._any_unit) is None:
                return Registration.refused(worker_id, FailureReason.NO_WORK)
            return await self.onboarding.start(self.task_run.id, worker, info, registration_id)

        # 5. reservation of the first doable unit still available
        async def reserve(batch: list[CandidateUnit]) -> Agent | None:
            return await self._reserve(worker, batch, registration_id)

        agent = await self._first_doable(info, candidates, reserve)
        if agent is None:
            return Registration.refused(worker_id, FailureReason.NO_WORK)
        return Registration(worker_id, agent, json_copy(agent.init_task_data))

    async def _worker_info(self, worker: Worker) -> WorkerInfo:
        """The worker as hooks see it, with the qualifications granted now."""
        granted = await self.database.get_qualifications(worker.id)
        held = {name: q.value for name, q in granted.items()}
        return WorkerInfo(str(worker.id), worker.worker_name, worker.provider_type, held)

    async def _candidates(self, worker: Worker) -> AsyncIterator[list[CandidateUnit]]:
        """Available units of assignments the worker has had no unit of, in order, a page at
        a time: a registration reads only as far as it needs, however large the run."""
        worked_on = await self.database.worked_on(self.task_run.id, worker.id)
        after: tuple[int, int] | None = None
        while True:
            page = await self.database.available_candidates(
                self.task_run.id, worked_on.assignment_ids, after, CANDIDATE_PAGE
            )
            if not page:
                return
            yield page
            after = (page[-1].assignment_index, page[-1].unit_index)

    async def _first_doable(
        self,
        info: WorkerInfo,
        candidates: AsyncIterator[list[CandidateUnit]],
        take: Callable[[list[CandidateUnit]], Awaitable[T | None]],
    ) -> T | None:
        """Offer `take` the candidates worker_can_do_unit accepts, batch by batch, in order,
        until it takes one (returns non-None)."""
        hook = self.task.worker_can_do_unit
        async for page in candidates:
            if hook is None:
                taken = await take(page)
                if taken is not None:
                    return taken
                continue
            for start in range(0, len(page), HOOK_BATCH):
                batch = page[start : start + HOOK_BATCH]
                verdicts = await gatherResults([self._can_do(hook, info, unit) for unit in batch])
                accepted = [unit for unit, ok in zip(batch, verdicts, strict=True) if ok]
                if accepted:
                    taken = await take(accepted)
                    if taken is not None:
                        return taken
        return None

    @staticmethod
    async def _any_unit(batch: list[CandidateUnit]) -> CandidateUnit:
        return batch[0]

    def _can_do(self, hook: Any, info: WorkerInfo, unit: CandidateUnit) -> Deferred[bool]:
        d = call_hook(self.run_blocking, hook, info, _unit_info(unit))

        def failed(failure: Any) -> bool:
            log.failure(
                "worker_can_do_unit failed for worker {name} ({worker_id}) and unit {unit_id}"
                " (assignment {index}): the unit is not offered",
                failure,
                name=info.worker_name,
                worker_id=info.worker_id,
                unit_id=unit.id,
                index=unit.assignment_index,
            )
            return False

        return d.addCallbacks(bool, failed)

    async def _reserve(
        self, worker: Worker, batch: list[CandidateUnit], registration_id: str | None
    ) -> Agent | None:
        agent_id = new_agent_id()
        unit = await self.database.reserve_unit(
            self.task_run.id,
            worker.id,
            agent_id,
            [u.id for u in batch],
            registration_id,
            status=Status.IN_TASK,
            init_from_assignment=self.task.init_data is None,
        )
        if unit is None:
            return None  # all taken meanwhile: the next batch
        return await self._put_to_work(worker, agent_id, unit, registration_id)

    async def _put_to_work(
        self,
        worker: Worker,
        agent_id: str,
        unit: Unit,
        registration_id: str | None,
    ) -> Agent:
        """The agent of a unit just reserved for it, with its task data, at work."""
        try:
            data = await self._init_data(unit)
        except Exception:
            log.failure(
                "init_data failed for unit {unit_id} (assignment {index}) of worker {name}:"
                " the unit goes back to the pool",
                unit_id=unit.id,
                index=unit.assignment_index,
                name=worker.worker_name,
            )
            await self.database.set_agent_status(agent_id, Status.EXPIRED, unit_status_if_lost())
            raise
        return self._at_work(worker, agent_id, unit, data, registration_id)

    def _at_work(
        self,
        worker: Worker,
        agent_id: str,
        unit: Unit,
        data: dict[str, Any],
        registration_id: str | None,
    ) -> Agent:
        """The agent of a unit just reserved for it, given its task data."""
        agent = self.registry.new_agent(
            agent_id, worker, data, registration_id, Status.IN_TASK, AgentKind.UNIT
        )
        if self.task.init_data is not None:  # else recorded with the reservation
            self.recorder.record_init_data(agent)
        if self.on_unit_agent is not None:
            self.on_unit_agent(agent, unit)
        return agent

    async def _init_data(self, unit: Unit) -> dict[str, Any]:
        if self.task.init_data is None:
            data = unit.assignment_data
        else:
            data = await call_hook(self.run_blocking, self.task.init_data, _unit_info(unit))
        if not isinstance(data, dict):
            raise TypeError(f"a unit's task data must be a dict, not {type(data).__name__}")
        return json_copy(data)

    # --- onboarding ---

    async def _submit_onboarding(
        self, agent: Agent, onboarding_data: dict[str, Any]
    ) -> Registration:
        if not self.onboarding.is_open(agent):
            return Registration.refused(agent.worker_id, FailureReason.TASK_MISSING)
        worker = await self.database.get_worker(int(agent.worker_id))
        if worker is None:
            return Registration.refused(agent.worker_id, FailureReason.TASK_MISSING)
        async with self.locks.of(worker.id):
            if not self.onboarding.is_open(agent):  # a second submission got here first
                return Registration.refused(agent.worker_id, FailureReason.TASK_MISSING)
            info = await self._worker_info(worker)
            refused = await self.onboarding.judge(agent, worker, info, onboarding_data)
            if refused is not None:
                return refused
            return await self._find_work(worker, agent.registration_id)

    # --- agents no longer held ---

    async def _finished_agent(self, agent_id: str) -> FinishedAgent | None:
        stored = await self.database.get_agent(agent_id)
        if stored is None or stored.task_run_id != self.task_run.id:
            return None
        if stored.status not in FINAL or self.registry.get(agent_id) is not None:
            return None  # at work (the caller asked before it was made)
        return FinishedAgent(
            stored.agent_id, str(stored.worker_id), stored.status, self.expiry.timed_out(stored)
        )
