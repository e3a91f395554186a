"""The registration pipeline (StoredWorkerPool) against a real database, on each engine.

Task hooks run inline (inline_runner) except where a blocking hook is the
point; agents' timers run on a task.Clock. Database calls are real, in the
database thread, so the tests run on the reactor (pytest-twisted).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList, gatherResults
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from architect.backend.registration import BadRegistration, Registration
from architect.backend.resume import Resumed, Resumption
from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import StorageConfig, TaskConfig
from architect.protocol import FailureReason, Status
from architect.qualifications import Requirement
from architect.storage import (
    Database,
    Direction,
    Unit,
    UnitStatus,
    open_database,
)
from architect.tasks.agent import Agent
from architect.tasks.definition import TaskDefinition, UnitInfo, WorkerInfo
from architect.tasks.hooks import BlockingRunner, inline_runner, thread_runner
from tests.clients import reactor

UNITS = [{"n": n} for n in range(4)]


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=Clock())
    yield database
    await database.close()


async def make_pool(
    db: Database,
    units: list[dict[str, Any]] | None = None,
    task: TaskDefinition | None = None,
    run_blocking: BlockingRunner = inline_runner,
    name: str = "run-1",
    **settings: Any,
) -> StoredWorkerPool:
    units = UNITS if units is None else units
    config = TaskConfig(name=name, units=tuple(units), **settings)
    run = await prepare_task_run(db, config, units)
    return StoredWorkerPool(Clock(), db, run, config, task or TaskDefinition(), run_blocking)


def provider(worker: str, registration_id: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"worker_name": worker, "provider_type": "mock", **extra}
    if registration_id is not None:
        data["agent_registration_id"] = registration_id
    return data


async def register(
    pool: StoredWorkerPool, worker: str, registration_id: str | None = None
) -> Registration:
    return await pool.register(provider(worker, registration_id))


async def unit_of(pool: StoredWorkerPool, registration: Registration) -> int:
    """The assignment index of the unit the registration's agent holds."""
    assert registration.agent is not None, registration.failure_reason
    stored = await pool.database.get_agent(registration.agent.agent_id)
    assert stored is not None and stored.unit_id is not None
    unit = await pool.database.get_unit(stored.unit_id)
    assert unit is not None
    return unit.assignment_index


def agent_of(registration: Registration) -> Agent:
    assert registration.agent is not None, registration.failure_reason
    return registration.agent


async def unit_statuses(pool: StoredWorkerPool) -> dict[int, str]:
    return {u.assignment_index: u.status for u in await pool.database.list_units(pool.task_run.id)}


# --- stage 0: the worker ---


@pytest_twisted.ensureDeferred
async def test_a_worker_is_found_or_created_by_provider_and_name(db: Database) -> None:
    pool = await make_pool(db)
    first = await register(pool, "w1", "a1-w1")
    second = await register(pool, "w1", "a2-w1")
    other_provider = await pool.register({"worker_name": "w1", "provider_type": "prolific"})
    no_provider = await pool.register({"worker_name": "w1"})
    assert first.worker_id == second.worker_id == no_provider.worker_id  # mock by default
    assert other_provider.worker_id != first.worker_id
    workers = await db.list_workers()
    assert sorted((w.provider_type, w.worker_name) for w in workers) == [
        ("mock", "w1"),
        ("prolific", "w1"),
    ]
    assert agent_of(first).init_task_data == {"n": 0}
    assert agent_of(second).init_task_data == {"n": 1}
    assert agent_of(first).status == Status.IN_TASK


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("bad", [{}, {"worker_name": ""}, {"worker_name": "w", "provider_type": 3}])
async def test_provider_data_without_a_usable_worker_is_an_error(
    db: Database, bad: dict[str, Any]
) -> None:
    pool = await make_pool(db)
    with pytest.raises(BadRegistration):
        await pool.register(bad)


@pytest_twisted.ensureDeferred
async def test_agent_ids_are_unguessable(db: Database) -> None:
    pool = await make_pool(db)
    ids = [agent_of(await register(pool, f"w{n}")).agent_id for n in range(3)]
    assert len(set(ids)) == 3
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


# --- stage 1: qualifications ---


@pytest_twisted.ensureDeferred
async def test_qualification_requirements_refuse_the_unqualified(db: Database) -> None:
    pool = await make_pool(
        db,
        qualifications=(
            Requirement("english", "exists"),
            Requirement("accuracy", ">=", 0.9),
            Requirement("blocked", "not exists"),
        ),
    )
    cases: dict[str, dict[str, Any]] = {
        "none": {},
        "low": {"english": True, "accuracy": 0.5},
        "good": {"english": True, "accuracy": 0.9},
        "blocked": {"english": True, "accuracy": 1, "blocked": 1},
    }
    for name, granted in cases.items():
        worker = await db.find_or_create_worker("mock", name)
        for qualification, value in granted.items():
            await db.grant_qualification(worker.id, qualification, value)
    assert (await register(pool, "none")).failure_reason == FailureReason.NOT_QUALIFIED
    assert (await register(pool, "low")).failure_reason == FailureReason.NOT_QUALIFIED
    assert (await register(pool, "blocked")).failure_reason == FailureReason.NOT_QUALIFIED
    refused = await register(pool, "none")
    assert refused.agent is None and refused.worker_id is not None
    assert (await register(pool, "good")).agent is not None
    assert len(await db.list_agents()) == 1


# --- stage 2: limits ---


@pytest_twisted.ensureDeferred
async def test_allowed_concurrent_at_its_exact_boundary(db: Database) -> None:
    pool = await make_pool(db, allowed_concurrent=2)
    first = await register(pool, "w1", "a1")
    await register(pool, "w1", "a2")
    refused = await register(pool, "w1", "a3")
    assert refused.failure_reason == FailureReason.TOO_MANY_CONCURRENT
    assert (await register(pool, "w2", "b1")).agent is not None  # another worker is not held
    agent_of(first).set_status(Status.COMPLETED)
    assert (await register(pool, "w1", "a4")).agent is not None
    assert (await register(pool, "w1", "a5")).failure_reason == FailureReason.TOO_MANY_CONCURRENT


@pytest_twisted.ensureDeferred
async def test_maximum_units_counts_done_and_in_progress_not_abandoned(
    db: Database,
) -> None:
    pool = await make_pool(db, maximum_units_per_worker=2)
    done = await register(pool, "w1", "a1")
    agent_of(done).set_status(Status.COMPLETED)
    working = await register(pool, "w1", "a2")
    assert (await register(pool, "w1", "a3")).failure_reason == FailureReason.MAX_UNITS
    agent_of(working).set_status(Status.DISCONNECT)  # abandoned: no longer counts
    again = await register(pool, "w1", "a4")
    assert again.agent is not None
    assert (await register(pool, "w1", "a5")).failure_reason == FailureReason.MAX_UNITS


@pytest_twisted.ensureDeferred
async def test_no_units_left_is_no_work(db: Database) -> None:
    pool = await make_pool(db, units=[{"n": 0}])
    assert (await register(pool, "w1")).agent is not None
    refused = await register(pool, "w2")
    assert (refused.agent, refused.failure_reason) == (None, FailureReason.NO_WORK)


# --- stage 3: worker_can_do_unit, and units already worked on ---


@pytest_twisted.ensureDeferred
async def test_worker_can_do_unit_filters_with_worker_and_unit_info(db: Database) -> None:
    seen: list[tuple[WorkerInfo, UnitInfo]] = []

    def worker_can_do_unit(worker: WorkerInfo, unit: UnitInfo) -> bool:
        seen.append((worker, unit))
        return worker.worker_name != "nobody" and unit.assignment_data["n"] % 2 == 1

    pool = await make_pool(db, task=TaskDefinition(worker_can_do_unit=worker_can_do_unit))
    assert await unit_of(pool, await register(pool, "w1")) == 1
    worker, unit = seen[0]
    assert (worker.worker_name, worker.provider_type, worker.qualifications) == ("w1", "mock", {})
    assert (unit.assignment_index, unit.unit_index, unit.assignment_data) == (0, 0, {"n": 0})
    assert await unit_of(pool, await register(pool, "w2")) == 3
    assert (await register(pool, "w3")).failure_reason == FailureReason.NO_WORK
    assert (await register(pool, "nobody")).failure_reason == FailureReason.NO_WORK


@pytest_twisted.ensureDeferred
async def test_a_failing_worker_can_do_unit_is_logged_and_that_unit_skipped(
    db: Database,
) -> None:
    def worker_can_do_unit(worker: WorkerInfo, unit: UnitInfo) -> bool:
        if unit.assignment_index == 0:
            raise RuntimeError("bug in the task")
        return True

    pool = await make_pool(db, task=TaskDefinition(worker_can_do_unit=worker_can_do_unit))
    with capturedLogs() as events:
        registration = await register(pool, "w1")
    assert await unit_of(pool, registration) == 1
    failures = [e for e in events if e.get("log_failure") is not None]
    assert len(failures) == 1
    assert failures[0]["name"] == "w1" and failures[0]["index"] == 0


@pytest_twisted.ensureDeferred
async def test_a_blocking_worker_can_do_unit_runs_in_a_thread(db: Database) -> None:
    release = threading.Event()
    threads: list[threading.Thread] = []

    def worker_can_do_unit(worker: WorkerInfo, unit: UnitInfo) -> bool:
        threads.append(threading.current_thread())
        if worker.worker_name == "slow":
            assert release.wait(10), "never released"
        return True

    pool = await make_pool(
        db,
        task=TaskDefinition(worker_can_do_unit=worker_can_do_unit),
        run_blocking=thread_runner(reactor),
    )
    slow = pool.register(provider("slow"))
    fast = await register(pool, "fast")  # not held up by the blocked hook
    assert fast.agent is not None
    assert not slow.called
    release.set()
    slow_done = await slow
    assert slow_done.agent is not None
    assert threading.main_thread() not in threads


@pytest_twisted.ensureDeferred
async def test_a_worker_does_not_get_an_assignment_worked_on_before(db: Database) -> None:
    pool = await make_pool(db, units=[{"n": 0}, {"n": 1}], units_per_assignment=2)
    first = await register(pool, "w1", "a1")
    assert await unit_of(pool, first) == 0
    agent_of(first).set_status(Status.DISCONNECT)  # unit 0 of assignment 0 is free again
    second = await register(pool, "w1", "a2")
    assert await unit_of(pool, second) == 1  # never the same assignment again
    assert (await register(pool, "w1", "a3")).failure_reason == FailureReason.NO_WORK
    # others fill the seats, both units of an assignment
    assert await unit_of(pool, await register(pool, "w2")) == 0
    assert await unit_of(pool, await register(pool, "w3")) == 0
    assert await unit_of(pool, await register(pool, "w4")) == 1
    assert (await register(pool, "w5")).failure_reason == FailureReason.NO_WORK


# --- stage 4: onboarding ---


def onboarding_task(**hooks: Callable[..., Any]) -> TaskDefinition:
    def onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
        return {"question": f"2+2, {worker.worker_name}?"}

    def validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
        return data.get("answer") == "4"

    return TaskDefinition(
        onboarding_data=hooks.get("onboarding_data", onboarding_data),
        validate_onboarding=hooks.get("validate_onboarding", validate_onboarding),
    )


async def qualification_of(db: Database, worker: str, name: str = "run-1_onboarding") -> Any:
    record = await db.find_or_create_worker("mock", worker)
    granted = await db.get_qualifications(record.id)
    return granted[name].value if name in granted else None


@pytest_twisted.ensureDeferred
async def test_onboarding_passed_grants_the_qualification_and_gives_a_unit(
    db: Database,
) -> None:
    pool = await make_pool(db, task=onboarding_task(), onboarding=True)
    first = await register(pool, "w1", "a1-w1")
    onboarding = agent_of(first)
    assert onboarding.agent_id.startswith("onboarding")
    assert first.init_task_data == {"question": "2+2, w1?"}
    assert onboarding.status == Status.ONBOARDING
    stored = await db.get_agent(onboarding.agent_id)
    assert stored is not None and (stored.kind, stored.status) == ("onboarding", "onboarding")
    # a reload during onboarding finds the onboarding agent
    again = await register(pool, "w1", "a1-w1")
    assert again.agent is onboarding and again.reconnected

    passed = await pool.submit_onboarding(onboarding, {"answer": "4"})
    unit_agent = agent_of(passed)
    assert not unit_agent.is_onboarding
    assert passed.init_task_data == {"n": 0}
    assert onboarding.status == Status.APPROVED
    assert await qualification_of(db, "w1") == 1
    # a reload now finds the unit agent; a new page goes straight to work
    assert (await register(pool, "w1", "a1-w1")).agent is unit_agent
    direct = await register(pool, "w1", "a2-w1")
    assert direct.agent is not None and not agent_of(direct).is_onboarding


@pytest_twisted.ensureDeferred
async def test_onboarding_failed_is_not_qualified_now_and_at_once_later(
    db: Database,
) -> None:
    pool = await make_pool(db, task=onboarding_task(), onboarding=True)
    onboarding = agent_of(await register(pool, "w1", "a1-w1"))
    failed = await pool.submit_onboarding(onboarding, {"answer": "5"})
    assert (failed.agent, failed.failure_reason) == (None, FailureReason.NOT_QUALIFIED)
    assert onboarding.status == Status.REJECTED
    assert await qualification_of(db, "w1") == 0
    agents_before = len(await db.list_agents())
    for registration_id in ("a1-w1", "a2-w1"):
        later = await register(pool, "w1", registration_id)
        assert later.failure_reason == FailureReason.NOT_QUALIFIED
    assert len(await db.list_agents()) == agents_before  # no new onboarding agent
    # a second submission of the same onboarding agent changes nothing
    repeat = await pool.submit_onboarding(onboarding, {"answer": "4"})
    assert repeat.failure_reason == FailureReason.TASK_MISSING
    assert await qualification_of(db, "w1") == 0


@pytest_twisted.ensureDeferred
async def test_a_failing_onboarding_hook_gets_a_refusal_not_a_stuck_page(
    db: Database,
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug in the task")

    pool = await make_pool(db, task=onboarding_task(onboarding_data=broken), onboarding=True)
    with capturedLogs() as events:
        refused = await register(pool, "w1")
    assert refused.failure_reason == FailureReason.NO_WORK
    assert any(e.get("log_failure") is not None and e.get("name") == "w1" for e in events)

    pool = await make_pool(
        db, task=onboarding_task(validate_onboarding=broken), onboarding=True, name="run-2"
    )
    onboarding = agent_of(await register(pool, "w2"))
    with capturedLogs() as events:
        refused = await pool.submit_onboarding(onboarding, {"answer": "4"})
    assert refused.failure_reason == FailureReason.NO_WORK
    assert any(e.get("log_failure") is not None and e.get("name") == "w2" for e in events)
    assert await qualification_of(db, "w2", "run-2_onboarding") is None  # may try again
    assert not onboarding.is_active


@pytest_twisted.ensureDeferred
async def test_no_onboarding_when_there_is_no_work(db: Database) -> None:
    pool = await make_pool(db, units=[{"n": 0}], task=onboarding_task(), onboarding=True)
    onboarding = agent_of(await register(pool, "w1"))
    assert agent_of(await pool.submit_onboarding(onboarding, {"answer": "4"})).is_active
    assert (await register(pool, "w2")).failure_reason == FailureReason.NO_WORK
    assert [a.kind for a in await db.list_agents()] == ["onboarding", "unit"]


# --- stage 6: reconnection ---


@pytest_twisted.ensureDeferred
async def test_reconnection_returns_the_same_agent_with_its_live_updates(
    db: Database,
) -> None:
    pool = await make_pool(db)
    first = await register(pool, "w1", "a1-w1")
    agent = agent_of(first)
    agent.observe({"text": "hello"})
    agent.receive_live_update({"update_id": "u1", "text": "hi"})
    again = await register(pool, "w1", "a1-w1")
    assert again.agent is agent and again.reconnected
    assert again.init_task_data is not None
    assert [u["text"] for u in again.init_task_data["past_live_updates"]] == ["hello", "hi"]
    assert len(await db.list_agents()) == 1


@pytest_twisted.ensureDeferred
async def test_reconnection_to_a_completed_agent_or_of_another_worker_is_task_missing(
    db: Database,
) -> None:
    pool = await make_pool(db)
    agent = agent_of(await register(pool, "w1", "a1-w1"))
    assert (await register(pool, "intruder", "a1-w1")).failure_reason == (
        FailureReason.TASK_MISSING
    )
    agent.set_status(Status.COMPLETED)
    refused = await register(pool, "w1", "a1-w1")
    assert (refused.agent, refused.failure_reason) == (None, FailureReason.TASK_MISSING)


@pytest_twisted.ensureDeferred
async def test_a_registration_id_of_another_run_starts_afresh(db: Database) -> None:
    old = await make_pool(db, name="old-run")
    agent_of(await register(old, "w1", "a1-w1")).set_status(Status.COMPLETED)
    await old.settled()
    new = await make_pool(db, name="new-run")
    fresh = await register(new, "w1", "a1-w1")
    assert fresh.agent is not None and fresh.init_task_data == {"n": 0}


# --- the database follows the agents ---


@pytest_twisted.ensureDeferred
async def test_every_status_change_and_live_update_is_recorded(db: Database) -> None:
    pool = await make_pool(db)
    agent = agent_of(await register(pool, "w1"))
    agent.observe({"text": "to the browser"})
    assert agent.receive_live_update({"update_id": "u1", "text": "from the browser"})
    assert not agent.receive_live_update({"update_id": "u1", "text": "from the browser"})
    agent.set_status(Status.COMPLETED)
    agent.set_status(Status.APPROVED)
    await pool.settled()
    history = [change.status for change in await db.status_history(agent.agent_id)]
    assert history == [Status.IN_TASK, Status.COMPLETED, Status.APPROVED]
    updates = await db.live_updates(agent.agent_id)
    assert [(u.direction, u.data["text"]) for u in updates] == [
        (Direction.CLIENT_BOUND, "to the browser"),
        (Direction.MEPHISTO_BOUND, "from the browser"),
    ]
    assert updates[0].update_id == updates[0].data["update_id"]
    assert (await unit_statuses(pool))[0] == UnitStatus.COMPLETED


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "status", [Status.DISCONNECT, Status.RETURNED, Status.TIMEOUT, Status.EXPIRED]
)
async def test_an_agent_that_leaves_returns_its_unit_to_the_pool(db: Database, status: str) -> None:
    pool = await make_pool(db, units=[{"n": 0}])
    agent = agent_of(await register(pool, "w1"))
    assert (await register(pool, "w2")).failure_reason == FailureReason.NO_WORK
    agent.set_status(status)
    assert await unit_of(pool, await register(pool, "w2")) == 0


@pytest_twisted.ensureDeferred
async def test_with_return_units_off_a_left_unit_stays_used(db: Database) -> None:
    pool = await make_pool(db, units=[{"n": 0}], return_units=False)
    agent = agent_of(await register(pool, "w1"))
    agent.set_status(Status.DISCONNECT)
    await pool.settled()
    assert (await register(pool, "w2")).failure_reason == FailureReason.NO_WORK
    assert await unit_statuses(pool) == {0: UnitStatus.RESERVED}


@pytest_twisted.ensureDeferred
async def test_candidates_are_read_page_by_page_across_a_large_run(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    original = db.available_units

    def counted(page: list[Unit]) -> list[Unit]:
        reads.append(len(page))
        return page

    def counting(*args: Any, **kwargs: Any) -> Deferred[list[Unit]]:
        return original(*args, **kwargs).addCallback(counted)

    monkeypatch.setattr(db, "available_units", counting)
    only_last = TaskDefinition(worker_can_do_unit=lambda w, unit: unit.assignment_index == 249)
    pool = await make_pool(db, units=[{"n": n} for n in range(250)], task=only_last)
    assert await unit_of(pool, await register(pool, "w1")) == 249
    assert reads == [100, 100, 50]  # every page, each read once
    reads.clear()
    plain = await make_pool(db, units=[{"n": n} for n in range(250)], name="run-2")
    assert await unit_of(plain, await register(plain, "w1")) == 0
    assert reads == [100]  # the first page was enough


# --- concurrency ---


@pytest_twisted.ensureDeferred
async def test_simultaneous_registrations_never_share_a_unit(db: Database) -> None:
    pool = await make_pool(db, units=[{"n": n} for n in range(10)], units_per_assignment=2)
    attempts = [pool.register(provider(f"w{n}", f"a-w{n}")) for n in range(50)]
    registrations: list[Registration] = await gatherResults(attempts)
    given = [r for r in registrations if r.agent is not None]
    assert len(given) == 20
    assert {r.failure_reason for r in registrations if r.agent is None} == {FailureReason.NO_WORK}
    agents = await db.list_agents()
    assert len(agents) == 20
    assert len({a.unit_id for a in agents}) == 20
    units = await db.list_units(pool.task_run.id)
    assert all(u.status == UnitStatus.RESERVED for u in units)
    assert sorted(u.agent_id or "" for u in units) == sorted(a.agent_id for a in agents)


@pytest_twisted.ensureDeferred
async def test_simultaneous_registrations_of_one_worker_respect_its_limits(
    db: Database,
) -> None:
    pool = await make_pool(db, units=[{"n": n} for n in range(20)], allowed_concurrent=3)
    attempts = [pool.register(provider("w1", f"a{n}-w1")) for n in range(10)]
    registrations: list[Registration] = await gatherResults(attempts)
    assert sum(r.agent is not None for r in registrations) == 3
    assert sum(r.failure_reason == FailureReason.TOO_MANY_CONCURRENT for r in registrations) == 7

    capped = await make_pool(
        db, units=[{"n": n} for n in range(20)], maximum_units_per_worker=2, name="run-2"
    )
    results = await DeferredList(
        [capped.register(provider("w2", f"b{n}-w2")) for n in range(10)], consumeErrors=True
    )
    outcomes = [r for ok, r in results if ok]
    assert sum(r.agent is not None for r in outcomes) == 2
    assert sum(r.failure_reason == FailureReason.MAX_UNITS for r in outcomes) == 8


# --- restart ---


async def take_back(db: Database, pool: StoredWorkerPool) -> Resumed:
    """What a restarted backend takes back of the pool's run."""
    records = await db.resumable_agents(pool.task_run.id)
    return await Resumption(Clock()).take_back(db, pool.registry, pool.task_run.id, records)


@pytest_twisted.ensureDeferred
async def test_a_restarted_pool_resumes_the_agents_left_working(
    storage_config: StorageConfig,
) -> None:
    db = await open_database(storage_config, clock=Clock())
    task = TaskDefinition(init_data=lambda unit: {"n": unit.assignment_data["n"], "extra": 1})
    pool = await make_pool(db, task=task)
    done = agent_of(await register(pool, "w1", "a1-w1"))
    working = agent_of(await register(pool, "w2", "a1-w2"))
    working.receive_live_update({"text": "hi", "update_id": "u1"})
    working.observe({"text": "hello"})
    done.set_status(Status.COMPLETED)
    await pool.settled()
    await db.close()

    db = await open_database(storage_config, clock=Clock())
    try:
        pool = await make_pool(db, task=TaskDefinition())
        assert await db.recover_after_restart(keep_task_run_id=pool.task_run.id) == []
        [(again, unit)] = await take_back(db, pool)
        assert unit is not None and unit.assignment_index == 1
        assert again.agent_id == working.agent_id and again.status == Status.IN_TASK
        # The data recorded at registration, not the (changed) hook's.
        assert again.init_task_data == {"n": 1, "extra": 1}
        assert [u["text"] for u in again.past_live_updates] == ["hi", "hello"]
        # A browser update taken before the restart is not taken twice.
        assert not again.receive_live_update({"text": "hi", "update_id": "u1"})
        # A reload gets the same agent with its history; the unit stays held.
        reload = await register(pool, "w2", "a1-w2")
        assert reload.agent is again and reload.reconnected
        assert reload.init_task_data is not None
        assert [u["text"] for u in reload.init_task_data["past_live_updates"]] == ["hi", "hello"]
        assert (await unit_statuses(pool))[1] == UnitStatus.RESERVED
        # Gone for good after all: the unit goes back to the pool.
        again.set_status(Status.DISCONNECT)
        await pool.settled()
        assert (await unit_statuses(pool))[1] == UnitStatus.AVAILABLE
    finally:
        await db.close()


@pytest_twisted.ensureDeferred
async def test_an_agent_without_recorded_task_data_is_not_resumed(db: Database) -> None:
    pool = await make_pool(db)
    working = agent_of(await register(pool, "w1", "a1-w1"))
    await pool.settled()
    # As in a database from before schema 2: nothing was recorded.
    await db.set_agent_init_data(working.agent_id, None)
    fresh = await make_pool(db)
    assert await take_back(db, fresh) == []
    stored = await db.get_agent(working.agent_id)
    assert stored is not None and stored.status == Status.DISCONNECT
    assert (await unit_statuses(fresh))[0] == UnitStatus.AVAILABLE


@pytest_twisted.ensureDeferred
async def test_restart_keeps_done_units_and_frees_those_in_progress(
    storage_config: StorageConfig,
) -> None:
    db = await open_database(storage_config, clock=Clock())
    pool = await make_pool(db)
    done = agent_of(await register(pool, "w1", "a1-w1"))
    working = agent_of(await register(pool, "w2", "a1-w2"))
    done.set_status(Status.COMPLETED)
    await pool.settled()
    await db.close()

    db = await open_database(storage_config, clock=Clock())
    try:
        assert await db.recover_after_restart() == [working.agent_id]
        pool = await make_pool(db)  # the same run name: continued, no units added
        assert len(await db.list_units(pool.task_run.id)) == len(UNITS)
        assert await unit_statuses(pool) == {
            0: UnitStatus.COMPLETED,
            1: UnitStatus.AVAILABLE,
            2: UnitStatus.AVAILABLE,
            3: UnitStatus.AVAILABLE,
        }
        for worker in ("w1", "w2"):
            refused = await register(pool, worker, f"a1-{worker}")
            assert refused.failure_reason == FailureReason.TASK_MISSING
        assert await unit_of(pool, await register(pool, "w3")) == 1
        assert pool.get_agent(done.agent_id) is None
    finally:
        await db.close()
