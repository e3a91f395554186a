"""One behaviour, two worker pools: the in-memory fake and the real, stored one.

tests/memory_backend.py's `MemoryWorkerPool` stands in for the real pool in the fast,
clock-driven tests of the ClientIOHandler (test_client_io.py, test_channels.py). Each
test here runs against both it and `StoredWorkerPool` over a SQLite file, so the fake
cannot drift from what it stands for: registration, reconnection by
agent_registration_id, onboarding passed and failed, no work left, limits, submission
and what each status does to the agent's unit.

Only what both pools offer is asked for (units as plain data, onboarding as one check
of the submitted data, the limits, some workers not qualified); everything the real
pool does beyond that (qualification rules, worker_can_do_unit, assignments of several
units, restarts) is tested in test_workers.py. A unit is known by its data: unit n is
{"n": n}. Submissions go through a ClientIOHandler, as in the daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from architect.backend.client_io import ClientIOHandler
from architect.backend.registration import BadRegistration, Registration, WorkerPool
from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import StorageConfig, TaskConfig
from architect.lifecycle import UnitStatus
from architect.protocol import SUBMIT_UNIT, FailureReason, Status
from architect.qualifications import Requirement
from architect.storage import Database, open_database
from architect.tasks.agent import Agent
from architect.tasks.definition import TaskDefinition, WorkerInfo
from architect.tasks.hooks import inline_runner
from tests.backend_fakes import FakeChannel
from tests.memory_backend import MemoryStore, MemoryWorkerPool

ONBOARDING_DATA = {"question": "2+2?"}
BLOCKED = "blocked"  # the qualification that keeps a worker out (real pool)
Check = Callable[[dict[str, Any]], bool]


def units(count: int) -> list[dict[str, Any]]:
    return [{"n": n} for n in range(count)]


def passes(data: dict[str, Any]) -> bool:
    return data.get("answer") == "4"


class Subject:
    """A pool under test behind a ClientIOHandler (for submissions) and a fake channel."""

    def __init__(
        self,
        pool: WorkerPool,
        settled: Callable[[], Deferred[None]],
        store: MemoryStore | None = None,
    ) -> None:
        self.pool = pool
        self._settled = settled
        self.store = store or MemoryStore()
        self.handler = ClientIOHandler(Clock(), pool, self.store)
        self.channel = FakeChannel("router")
        self.handler.add_channel(self.channel)

    async def register(self, worker: str, registration_id: str | None = None) -> Registration:
        provider: dict[str, Any] = {"worker_name": worker, "provider_type": "mock"}
        if registration_id is not None:
            provider["agent_registration_id"] = registration_id
        return await self.pool.register(provider)

    async def unit(self, worker: str, registration_id: str | None = None) -> int:
        """The unit a new registration of `worker` gets (fails if refused)."""
        agent = agent_of(await self.register(worker, registration_id))
        n: int = agent.init_task_data["n"]
        return n

    async def refusal(self, worker: str, registration_id: str | None = None) -> str | None:
        registration = await self.register(worker, registration_id)
        assert registration.agent is None, f"{worker} got agent {registration.agent}"
        return registration.failure_reason

    async def onboard(self, agent: Agent, answer: str) -> Registration:
        return await self.pool.submit_onboarding(agent, {"answer": answer})

    async def submit(self, agent: Agent, data: dict[str, Any]) -> None:
        """The worker's page submits: through the handler, as a router would deliver it."""
        await self.channel.receive(SUBMIT_UNIT, agent.agent_id, data)
        await self.settled()

    async def set_status(self, agent: Agent, status: str) -> None:
        """The router or the task code moves the agent on."""
        agent.set_status(status)
        await self.settled()

    async def settled(self) -> None:
        await self._settled()


class MakePool(Protocol):
    async def __call__(
        self,
        unit_data: Sequence[dict[str, Any]],
        *,
        onboarding: Check | None = None,
        allowed_concurrent: int = 0,
        maximum_units_per_worker: int = 0,
        not_qualified: Sequence[str] = (),
    ) -> Subject: ...


def memory_maker() -> MakePool:
    async def make(
        unit_data: Sequence[dict[str, Any]],
        *,
        onboarding: Check | None = None,
        allowed_concurrent: int = 0,
        maximum_units_per_worker: int = 0,
        not_qualified: Sequence[str] = (),
    ) -> Subject:
        pool = MemoryWorkerPool(
            Clock(),
            unit_data,
            onboarding_data=dict(ONBOARDING_DATA) if onboarding else None,
            check_onboarding=onboarding,
            max_concurrent=allowed_concurrent or None,
            max_units_per_worker=maximum_units_per_worker or None,
            blocked_workers=not_qualified,
        )
        return Subject(pool, lambda: succeed(None))

    return make


class CompletingStore(MemoryStore):
    """Keeps submissions in memory, and a completing one's agent status in the database, as
    StoredSubmissions does in the submission's transaction (the recorder leaves it out)."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database

    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None = None,
        completes: bool = False,
    ) -> Deferred[None]:
        if not completes:
            return super().save_unit_submission(agent_id, worker_id, data, dedupe_key)
        done = self.database.set_agent_status(agent_id, Status.COMPLETED, UnitStatus.COMPLETED)
        return done.addCallback(
            lambda _: super(CompletingStore, self).save_unit_submission(agent_id, worker_id, data)
        )


def stored_maker(database: Database) -> MakePool:
    made = 0

    async def make(
        unit_data: Sequence[dict[str, Any]],
        *,
        onboarding: Check | None = None,
        allowed_concurrent: int = 0,
        maximum_units_per_worker: int = 0,
        not_qualified: Sequence[str] = (),
    ) -> Subject:
        nonlocal made
        made += 1
        config = TaskConfig(
            name=f"contract-{made}",
            units=tuple(unit_data),
            onboarding=onboarding is not None,
            allowed_concurrent=allowed_concurrent,
            maximum_units_per_worker=maximum_units_per_worker,
            qualifications=(Requirement(BLOCKED, "not exists"),),
        )
        for name in not_qualified:
            worker = await database.find_or_create_worker("mock", name)
            await database.grant_qualification(worker.id, BLOCKED, 1)
        task = TaskDefinition()
        if onboarding is not None:
            check = onboarding

            def onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
                return dict(ONBOARDING_DATA)

            def validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
                return check(data)

            task = TaskDefinition(
                onboarding_data=onboarding_data, validate_onboarding=validate_onboarding
            )
        run = await prepare_task_run(database, config, unit_data)
        pool = StoredWorkerPool(Clock(), database, run, config, task, inline_runner)
        return Subject(pool, pool.settled, CompletingStore(database))

    return make


@pytest.fixture(params=["memory", "stored-sqlite", "stored-postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest_twisted.async_yield_fixture
async def make(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[MakePool]:
    """Makes pools of the kind under test (the stored ones share one database, on each
    engine in turn)."""
    if kind == "memory":
        yield memory_maker()
        return
    storage = StorageConfig(data_dir=tmp_path / "data")
    if kind == "stored-postgresql":
        storage = attrs.evolve(storage, url=request.getfixturevalue("postgres_url"))
    database = await open_database(storage, clock=Clock())
    try:
        yield stored_maker(database)
    finally:
        await database.close()


def agent_of(registration: Registration) -> Agent:
    assert registration.agent is not None, registration.failure_reason
    return registration.agent


# --- registration ---


@pytest_twisted.ensureDeferred
async def test_workers_get_the_units_in_order_one_each(make: MakePool) -> None:
    subject = await make(units(3))
    first = await subject.register("w1", "a1-w1")
    agent = agent_of(first)
    assert (first.init_task_data, agent.init_task_data) == ({"n": 0}, {"n": 0})
    assert agent.status == Status.IN_TASK
    assert not agent.is_onboarding and not first.reconnected
    assert first.failure_reason is None
    assert first.worker_id == agent.worker_id
    assert subject.pool.get_agent(agent.agent_id) is agent
    assert await subject.unit("w2") == 1
    second = await subject.register("w1", "a2-w1")  # a second unit for the same worker
    assert agent_of(second).init_task_data == {"n": 2}
    assert second.worker_id == first.worker_id
    assert agent_of(second).agent_id != agent.agent_id
    assert subject.pool.get_agent("nobody") is None


@pytest_twisted.ensureDeferred
async def test_agent_ids_are_unguessable_and_workers_known_by_name(make: MakePool) -> None:
    subject = await make(units(3))
    registrations = [await subject.register(w) for w in ("w1", "w2", "w1")]
    ids = [agent_of(r).agent_id for r in registrations]
    assert len(set(ids)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    workers = [r.worker_id for r in registrations]
    assert workers[0] == workers[2] != workers[1]


@pytest.mark.parametrize(
    "name",
    [
        "=cmd|' /C calc'!A0",  # a formula, were the results opened as a spreadsheet
        "+1",
        "-1",
        "@SUM(1)",
        "\tname",
        "a" * 101,
        "a b",
        "<script>",
        "é",
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_worker_id_the_task_cannot_take_is_refused_clearly(
    make: MakePool, name: str
) -> None:
    subject = await make(units(1))
    assert await subject.refusal(name) == FailureReason.BAD_WORKER_ID
    assert await subject.unit("w1") == 0  # nothing was used up


@pytest.mark.parametrize(
    "name", ["A1B2C3D4E5", "5f3e9a0c1b2d3e4f5a6b7c8d", "ann.lee@lab.org", "a" * 100]
)
@pytest_twisted.ensureDeferred
async def test_the_worker_ids_of_crowd_platforms_are_taken(make: MakePool, name: str) -> None:
    subject = await make(units(1))
    assert await subject.unit(name) == 0


@pytest.mark.parametrize("provider", [{}, {"worker_name": ""}, {"worker_name": None}])
@pytest_twisted.ensureDeferred
async def test_provider_data_without_a_worker_name_is_an_error(
    make: MakePool, provider: dict[str, Any]
) -> None:
    subject = await make(units(1))
    with pytest.raises(BadRegistration):
        await subject.pool.register(provider)
    assert await subject.unit("w1") == 0  # nothing was used up


@pytest_twisted.ensureDeferred
async def test_a_worker_who_is_not_qualified_is_refused(make: MakePool) -> None:
    subject = await make(units(2), not_qualified=["mallory"])
    assert await subject.refusal("mallory", "a1") == FailureReason.NOT_QUALIFIED
    assert await subject.refusal("mallory", "a2") == FailureReason.NOT_QUALIFIED
    assert await subject.unit("alice") == 0  # no unit went to mallory


# --- reconnection: the same agent_registration_id ---


@pytest_twisted.ensureDeferred
async def test_a_reload_gets_the_same_agent_with_its_live_updates(make: MakePool) -> None:
    subject = await make(units(2))
    first = await subject.register("w1", "a1-w1")
    agent = agent_of(first)
    agent.observe({"text": "hello"})
    assert agent.receive_live_update({"update_id": "u1", "text": "hi"})
    again = await subject.register("w1", "a1-w1")
    assert again.agent is agent and again.reconnected
    assert again.worker_id == first.worker_id
    assert again.init_task_data is not None and again.init_task_data["n"] == 0
    assert [u["text"] for u in again.init_task_data["past_live_updates"]] == ["hello", "hi"]
    assert await subject.unit("w2") == 1  # the reload took no unit


@pytest_twisted.ensureDeferred
async def test_a_registration_id_of_another_worker_is_task_missing(make: MakePool) -> None:
    subject = await make(units(2))
    agent = agent_of(await subject.register("w1", "a1-w1"))
    assert await subject.refusal("intruder", "a1-w1") == FailureReason.TASK_MISSING
    assert agent.status == Status.IN_TASK  # untouched
    assert (await subject.register("w1", "a1-w1")).agent is agent


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.DISCONNECT, Status.EXPIRED])
@pytest_twisted.ensureDeferred
async def test_a_reload_of_an_agent_that_is_done_or_gone_is_task_missing(
    make: MakePool, status: str
) -> None:
    subject = await make(units(3))
    agent = agent_of(await subject.register("w1", "a1-w1"))
    await subject.set_status(agent, status)
    assert await subject.refusal("w1", "a1-w1") == FailureReason.TASK_MISSING
    assert agent.status == status
    assert await subject.unit("w1", "a2-w1") == 1  # a new page is a new registration


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.DISCONNECT, Status.EXPIRED])
@pytest_twisted.ensureDeferred
async def test_a_finished_agent_is_no_longer_held_but_known(make: MakePool, status: str) -> None:
    subject = await make(units(2))
    agent = agent_of(await subject.register("w1", "a1-w1"))
    assert await subject.pool.finished_agent(agent.agent_id) is None  # at work
    await subject.set_status(agent, status)
    assert subject.pool.get_agent(agent.agent_id) is None
    finished = await subject.pool.finished_agent(agent.agent_id)
    assert finished is not None
    assert (finished.agent_id, finished.worker_id, finished.status) == (
        agent.agent_id,
        agent.worker_id,
        status,
    )
    assert await subject.pool.finished_agent("nobody") is None


# --- onboarding ---


@pytest_twisted.ensureDeferred
async def test_onboarding_passed_leads_to_a_unit_and_is_not_asked_again(make: MakePool) -> None:
    subject = await make(units(3), onboarding=passes)
    first = await subject.register("w1", "a1-w1")
    onboarding = agent_of(first)
    assert onboarding.is_onboarding and onboarding.agent_id.startswith("onboarding")
    assert onboarding.status == Status.ONBOARDING
    assert first.init_task_data == ONBOARDING_DATA
    assert subject.pool.get_agent(onboarding.agent_id) is onboarding
    # a reload during onboarding finds the onboarding agent
    again = await subject.register("w1", "a1-w1")
    assert again.agent is onboarding and again.reconnected

    passed = await subject.onboard(onboarding, "4")
    unit_agent = agent_of(passed)
    assert not unit_agent.is_onboarding and unit_agent.status == Status.IN_TASK
    assert passed.init_task_data == {"n": 0}
    assert passed.worker_id == first.worker_id
    assert onboarding.status == Status.APPROVED
    assert subject.pool.get_agent(onboarding.agent_id) is None  # decided: not held
    # a reload now finds the unit agent; another page goes straight to work
    assert (await subject.register("w1", "a1-w1")).agent is unit_agent
    assert await subject.unit("w1", "a2-w1") == 1
    # the next worker is onboarded in turn
    assert agent_of(await subject.register("w2", "a1-w2")).is_onboarding


@pytest_twisted.ensureDeferred
async def test_onboarding_failed_is_not_qualified_now_and_later(make: MakePool) -> None:
    subject = await make(units(2), onboarding=passes)
    onboarding = agent_of(await subject.register("w1", "a1-w1"))
    failed = await subject.onboard(onboarding, "5")
    assert (failed.agent, failed.failure_reason) == (None, FailureReason.NOT_QUALIFIED)
    assert onboarding.status == Status.REJECTED
    for registration_id in ("a1-w1", "a2-w1", None):
        assert await subject.refusal("w1", registration_id) == FailureReason.NOT_QUALIFIED
    # the same onboarding submitted again changes nothing
    repeat = await subject.onboard(onboarding, "4")
    assert repeat.failure_reason == FailureReason.TASK_MISSING
    assert await subject.refusal("w1", "a3-w1") == FailureReason.NOT_QUALIFIED
    # w1's failure used up no unit
    second = agent_of(await subject.register("w2", "a1-w2"))
    assert agent_of(await subject.onboard(second, "4")).init_task_data == {"n": 0}


@pytest_twisted.ensureDeferred
async def test_onboarding_of_an_agent_that_is_not_onboarding_is_task_missing(
    make: MakePool,
) -> None:
    subject = await make(units(2), onboarding=passes)
    onboarding = agent_of(await subject.register("w1"))
    unit_agent = agent_of(await subject.onboard(onboarding, "4"))
    assert (await subject.onboard(unit_agent, "4")).failure_reason == FailureReason.TASK_MISSING
    assert (await subject.onboard(onboarding, "4")).failure_reason == FailureReason.TASK_MISSING
    assert unit_agent.status == Status.IN_TASK


@pytest_twisted.ensureDeferred
async def test_an_onboarding_check_that_fails_is_no_work_and_may_be_tried_again(
    make: MakePool,
) -> None:
    def broken(data: dict[str, Any]) -> bool:
        if data.get("answer") == "crash":
            raise RuntimeError("bug in the task")
        return passes(data)

    subject = await make(units(2), onboarding=broken)
    onboarding = agent_of(await subject.register("w1", "a1-w1"))
    with capturedLogs() as events:
        refused = await subject.onboard(onboarding, "crash")
    assert (refused.agent, refused.failure_reason) == (None, FailureReason.NO_WORK)
    assert any(e.get("log_failure") is not None for e in events)
    assert not onboarding.is_active
    # Nothing was decided about the worker: onboarding again, then passed.
    again = agent_of(await subject.register("w1", "a2-w1"))
    assert again.is_onboarding and again is not onboarding
    assert agent_of(await subject.onboard(again, "4")).init_task_data == {"n": 0}


# --- no work left ---


@pytest_twisted.ensureDeferred
async def test_no_unit_left_is_no_work(make: MakePool) -> None:
    subject = await make(units(1))
    agent = agent_of(await subject.register("w1"))
    assert await subject.refusal("w2") == FailureReason.NO_WORK
    await subject.submit(agent, {"answer": 1})
    assert await subject.refusal("w3") == FailureReason.NO_WORK


@pytest_twisted.ensureDeferred
async def test_no_onboarding_when_there_is_no_work(make: MakePool) -> None:
    subject = await make(units(1), onboarding=passes)
    onboarding = agent_of(await subject.register("w1"))
    assert agent_of(await subject.onboard(onboarding, "4")).is_active
    assert await subject.refusal("w2") == FailureReason.NO_WORK


@pytest_twisted.ensureDeferred
async def test_a_worker_does_not_get_again_a_unit_they_left(make: MakePool) -> None:
    subject = await make(units(2))
    left = agent_of(await subject.register("w1", "a1-w1"))
    await subject.set_status(left, Status.DISCONNECT)
    assert await subject.unit("w1", "a2-w1") == 1
    assert await subject.refusal("w1", "a3-w1") == FailureReason.NO_WORK
    assert await subject.unit("w2") == 0  # but another worker does


# --- submission ---


@pytest_twisted.ensureDeferred
async def test_a_submission_completes_the_agent_and_uses_up_its_unit(make: MakePool) -> None:
    subject = await make(units(2))
    agent = agent_of(await subject.register("w1", "a1-w1"))
    await subject.submit(agent, {"answer": 42})
    assert agent.status == Status.COMPLETED and not agent.is_active
    assert [s.data for s in subject.store.of_agent(agent.agent_id, "unit")] == [{"answer": 42}]
    assert await subject.unit("w2") == 1
    assert await subject.refusal("w3") == FailureReason.NO_WORK
    assert await subject.refusal("w1", "a2-w1") == FailureReason.NO_WORK


# --- statuses: what each does to the unit ---


@pytest.mark.parametrize(
    "status",
    [
        Status.DISCONNECT,
        Status.RETURNED,
        Status.TIMEOUT,
        Status.EXPIRED,
        Status.PARTNER_DISCONNECT,
        Status.MEPHISTO_DISCONNECT,
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_agent_that_leaves_unfinished_returns_its_unit(
    make: MakePool, status: str
) -> None:
    subject = await make(units(1))
    agent = agent_of(await subject.register("w1"))
    assert await subject.refusal("w2") == FailureReason.NO_WORK
    await subject.set_status(agent, status)
    assert not agent.is_active
    assert await subject.unit("w2") == 0


@pytest.mark.parametrize(
    "statuses",
    [
        [Status.COMPLETED],
        [Status.SOFT_REJECTED],
        [Status.APPROVED],
        [Status.REJECTED],
        [Status.COMPLETED, Status.APPROVED],
        [Status.COMPLETED, Status.REJECTED],
        [Status.COMPLETED, Status.SOFT_REJECTED],
        [Status.COMPLETED, Status.EXPIRED],  # a later status does not undo the work
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_unit_done_stays_done_whatever_follows(make: MakePool, statuses: list[str]) -> None:
    subject = await make(units(1))
    agent = agent_of(await subject.register("w1"))
    for status in statuses:
        await subject.set_status(agent, status)
    assert await subject.refusal("w2") == FailureReason.NO_WORK


@pytest_twisted.ensureDeferred
async def test_statuses_that_keep_an_agent_working_keep_its_unit(make: MakePool) -> None:
    subject = await make(units(1))
    agent = agent_of(await subject.register("w1", "a1-w1"))
    for status in (Status.WAITING, Status.IN_TASK):
        await subject.set_status(agent, status)
        assert agent.is_active
        assert await subject.refusal("w2") == FailureReason.NO_WORK
    assert (await subject.register("w1", "a1-w1")).agent is agent


# --- limits ---


@pytest_twisted.ensureDeferred
async def test_allowed_concurrent_at_its_boundary(make: MakePool) -> None:
    subject = await make(units(6), allowed_concurrent=2)
    first = agent_of(await subject.register("w1", "a1"))
    await subject.register("w1", "a2")
    assert await subject.refusal("w1", "a3") == FailureReason.TOO_MANY_CONCURRENT
    assert await subject.unit("w2") == 2  # another worker is not held
    await subject.submit(first, {"done": True})
    assert await subject.unit("w1", "a4") == 3
    assert await subject.refusal("w1", "a5") == FailureReason.TOO_MANY_CONCURRENT


@pytest_twisted.ensureDeferred
async def test_maximum_units_counts_done_and_in_progress_not_abandoned(make: MakePool) -> None:
    subject = await make(units(6), maximum_units_per_worker=2)
    done = agent_of(await subject.register("w1", "a1"))
    await subject.submit(done, {"done": True})
    working = agent_of(await subject.register("w1", "a2"))
    assert await subject.refusal("w1", "a3") == FailureReason.MAX_UNITS
    await subject.set_status(working, Status.DISCONNECT)  # abandoned: no longer counts
    assert await subject.unit("w1", "a4") == 2
    assert await subject.refusal("w1", "a5") == FailureReason.MAX_UNITS
    assert await subject.unit("w2") == 1  # the abandoned unit, to another worker


@pytest_twisted.ensureDeferred
async def test_a_soft_rejected_unit_counts_against_the_maximum(make: MakePool) -> None:
    subject = await make(units(3), maximum_units_per_worker=1)
    agent = agent_of(await subject.register("w1", "a1"))
    await subject.set_status(agent, Status.SOFT_REJECTED)
    assert await subject.refusal("w1", "a2") == FailureReason.MAX_UNITS
