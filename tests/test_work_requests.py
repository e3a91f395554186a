"""register_for_work: a registration's checks and reservation in one transaction, on every
engine, and the pool's use of it (one trip to the database per registration without hooks);
and the candidate pages of registrations with a hook, decoded only as they are used."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock

from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import StorageConfig, TaskConfig
from architect.protocol import FailureReason, Status
from architect.storage import Database, UnitStatus, WorkRequest, open_database
from architect.storage.sqlite.engine import SQLiteEngine
from architect.storage.sqlite.work import FIRST_NEW_UNIT
from architect.tasks.definition import TaskDefinition
from architect.tasks.hooks import inline_runner


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=Clock())
    yield database
    await database.close()


async def new_run(
    db: Database, assignments: int = 3, per_assignment: int = 1, name: str = "run-1"
) -> int:
    run = await db.find_or_create_task_run(name, {})
    await db.add_assignments(run.id, [{"n": n} for n in range(assignments)], per_assignment)
    return run.id


def anyone(held: Mapping[str, Any]) -> bool:
    return True


def request(run: int, worker: str, agent_id: str, **changes: Any) -> WorkRequest:
    fields: dict[str, Any] = {
        "task_run_id": run,
        "provider_type": "mock",
        "worker_name": worker,
        "agent_id": agent_id,
        "agent_registration_id": f"r-{agent_id}",
        "look_up_registration": True,
        "qualified": anyone,
        "allowed_concurrent": 0,
        "maximum_units_per_worker": 0,
        "status": Status.IN_TASK,
        "init_from_assignment": True,
        **changes,
    }
    return WorkRequest(**fields)


@pytest_twisted.ensureDeferred
async def test_the_first_unit_in_order_is_reserved_for_a_new_agent(db: Database) -> None:
    run = await new_run(db)
    answer = await db.register_for_work(request(run, "w1", "a1"))
    assert answer.failure_reason is None and not answer.known_registration
    assert answer.unit is not None
    assert (answer.unit.assignment_index, answer.unit.assignment_data) == (0, {"n": 0})
    assert (answer.unit.status, answer.unit.agent_id) == (UnitStatus.RESERVED, "a1")
    assert [w.worker_name for w in await db.list_workers()] == ["w1"]
    assert answer.worker == (await db.list_workers())[0]
    [agent] = await db.list_agents(run)
    assert (agent.agent_id, agent.worker_id, agent.unit_id) == (
        "a1",
        answer.worker.id,
        answer.unit.id,
    )
    assert (agent.status, agent.agent_registration_id) == (Status.IN_TASK, "r-a1")
    [resumable] = await db.resumable_agents(run)
    assert resumable.init_task_data == {"n": 0}  # recorded with the reservation


@pytest_twisted.ensureDeferred
async def test_an_assignment_the_worker_had_a_unit_of_is_passed_over(db: Database) -> None:
    run = await new_run(db, assignments=2, per_assignment=2)
    first = await db.register_for_work(request(run, "w1", "a1"))
    # Whatever became of its first agent: the assignment stays worked on.
    await db.set_agent_status("a1", Status.EXPIRED, UnitStatus.AVAILABLE)
    second = await db.register_for_work(request(run, "w1", "a2"))
    other = await db.register_for_work(request(run, "w2", "a3"))
    assert first.unit is not None and second.unit is not None and other.unit is not None
    assert (first.unit.assignment_index, first.unit.unit_index) == (0, 0)
    assert (second.unit.assignment_index, second.unit.unit_index) == (1, 0)
    assert (other.unit.assignment_index, other.unit.unit_index) == (0, 0)  # released: again
    third = await db.register_for_work(request(run, "w1", "a4"))
    assert (third.unit, third.failure_reason) == (None, FailureReason.NO_WORK)


@pytest_twisted.ensureDeferred
async def test_the_qualification_check_sees_the_decoded_values_and_refuses(db: Database) -> None:
    run = await new_run(db)
    worker = await db.find_or_create_worker("mock", "w1")
    await db.grant_qualification(worker.id, "score", {"level": [1, 2]})
    seen: list[dict[str, Any]] = []

    def refuse(held: Mapping[str, Any]) -> bool:
        seen.append(dict(held))
        return False

    answer = await db.register_for_work(request(run, "w1", "a1", qualified=refuse))
    assert seen == [{"score": {"level": [1, 2]}}]
    assert (answer.worker, answer.unit, answer.failure_reason) == (
        worker,
        None,
        FailureReason.NOT_QUALIFIED,
    )
    assert await db.list_agents() == []
    assert {u.status for u in await db.list_units(run)} == {UnitStatus.AVAILABLE}


@pytest_twisted.ensureDeferred
async def test_a_refused_registration_still_keeps_the_new_worker(db: Database) -> None:
    run = await new_run(db)
    answer = await db.register_for_work(request(run, "w1", "a1", qualified=lambda held: False))
    assert answer.failure_reason == FailureReason.NOT_QUALIFIED
    assert await db.list_workers() == [answer.worker]


@pytest_twisted.ensureDeferred
async def test_the_limits_are_checked_in_order_concurrency_first(db: Database) -> None:
    run = await new_run(db, assignments=5)
    await db.register_for_work(request(run, "w1", "a1"))
    both = {"allowed_concurrent": 1, "maximum_units_per_worker": 1}
    answer = await db.register_for_work(request(run, "w1", "a2", **both))
    assert answer.failure_reason == FailureReason.TOO_MANY_CONCURRENT
    answer = await db.register_for_work(request(run, "w1", "a2", allowed_concurrent=2))
    assert answer.unit is not None  # 2 allowed at once: the second goes
    await db.set_agent_status("a1", Status.COMPLETED, UnitStatus.COMPLETED)
    await db.set_agent_status("a2", Status.COMPLETED, UnitStatus.COMPLETED)
    answer = await db.register_for_work(request(run, "w1", "a3", **both))
    assert answer.failure_reason == FailureReason.MAX_UNITS
    answer = await db.register_for_work(request(run, "w1", "a3", maximum_units_per_worker=3))
    assert answer.unit is not None
    assert len(await db.list_agents(run)) == 3


@pytest_twisted.ensureDeferred
async def test_a_registration_id_the_run_knows_stops_before_the_checks(db: Database) -> None:
    run = await new_run(db)
    other_run = await new_run(db, name="run-2")
    await db.register_for_work(request(run, "w1", "a1"))
    again = request(run, "w1", "a2", agent_registration_id="r-a1")
    answer = await db.register_for_work(again)
    assert answer.known_registration and answer.unit is None and answer.failure_reason is None
    assert answer.worker.worker_name == "w1"
    assert len(await db.list_agents()) == 1
    # Another run's registration id, or the lookup turned off: the checks go on.
    elsewhere = await db.register_for_work(
        request(other_run, "w1", "a3", agent_registration_id="r-a1")
    )
    assert elsewhere.unit is not None and not elsewhere.known_registration
    skipped = await db.register_for_work(
        request(run, "w1", "a4", agent_registration_id="r-a1", look_up_registration=False)
    )
    assert skipped.unit is not None and not skipped.known_registration


@pytest_twisted.ensureDeferred
async def test_a_check_that_raises_leaves_nothing_behind(db: Database) -> None:
    run = await new_run(db)

    def broken(held: Mapping[str, Any]) -> bool:
        raise RuntimeError("requirement cannot be read")

    with pytest.raises(RuntimeError, match="cannot be read"):
        await db.register_for_work(request(run, "w1", "a1", qualified=broken))
    assert await db.list_workers() == []  # the worker it made went with the transaction


@pytest_twisted.ensureDeferred
async def test_an_unknown_status_is_refused_before_any_work(db: Database) -> None:
    run = await new_run(db)
    with pytest.raises(ValueError, match="not a known agent status"):
        db.register_for_work(request(run, "w1", "a1", status="sleeping"))


@pytest_twisted.ensureDeferred
async def test_simultaneous_requests_never_share_a_unit_nor_pass_a_limit(db: Database) -> None:
    run = await new_run(db, assignments=6)
    asks = [
        db.register_for_work(request(run, f"w{n % 3}", f"a{n}", allowed_concurrent=2))
        for n in range(12)
    ]
    answers = await gatherResults(asks)
    given = [a for a in answers if a.unit is not None]
    assert len(given) == 6 and len({a.unit.id for a in given if a.unit}) == 6
    per_worker = [sum(1 for a in given if a.worker.worker_name == f"w{n}") for n in range(3)]
    assert per_worker == [2, 2, 2]
    assert {a.failure_reason for a in answers if a.unit is None} == {
        FailureReason.TOO_MANY_CONCURRENT
    }


@pytest.mark.parametrize("engine", ["sqlite"])
@pytest_twisted.ensureDeferred
async def test_the_first_new_unit_is_read_in_index_order_not_sorted(
    db: Database, tmp_path: Path
) -> None:
    """However many units are available, the pick must not sort them all."""
    await new_run(db, assignments=50, per_assignment=2)
    connection = sqlite3.connect(tmp_path / "data" / "architect.sqlite3")
    try:
        plan = connection.execute("EXPLAIN QUERY PLAN " + FIRST_NEW_UNIT, (1, "x", 1, 1, "u"))
        steps = [row[-1] for row in plan.fetchall()]
    finally:
        connection.close()
    assert any("units_available_in_order" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps


@pytest_twisted.ensureDeferred
async def test_a_candidate_page_is_the_available_page_left_undecoded(db: Database) -> None:
    run = await new_run(db, assignments=5, per_assignment=2)
    await db.register_for_work(request(run, "w1", "a1"))  # takes assignment 0's first unit
    units = await db.available_units(run, (), (1, 0), 4)
    candidates = await db.available_candidates(run, (), (1, 0), 4)
    assert [(c.id, c.assignment_id, c.assignment_index, c.unit_index) for c in candidates] == [
        (u.id, u.assignment_id, u.assignment_index, u.unit_index) for u in units
    ]
    assert [(c.assignment_index, c.unit_index) for c in candidates] == [
        (1, 1),
        (2, 0),
        (2, 1),
        (3, 0),
    ]
    assert all(isinstance(c.data_json, str) for c in candidates)
    first = candidates[0].assignment_data()
    assert first == units[0].assignment_data == {"n": 1}
    first["n"] = 99  # each call decodes afresh: a hook's changes stay its own
    assert candidates[0].assignment_data() == {"n": 1}
    excluded = await db.available_candidates(run, (units[0].assignment_id,), None, 2)
    assert [(c.assignment_index, c.unit_index) for c in excluded] == [(0, 1), (2, 0)]


# --- the pool ---


async def make_pool(db: Database, task: TaskDefinition, **settings: Any) -> StoredWorkerPool:
    units = [{"n": n} for n in range(4)]
    config = TaskConfig(name="run-1", units=tuple(units), **settings)
    run = await prepare_task_run(db, config, units)
    return StoredWorkerPool(Clock(), db, run, config, task, inline_runner)


def trips(db: Database) -> int:
    engine = db._engine  # type: ignore[attr-defined]
    assert isinstance(engine, SQLiteEngine)
    return engine.groups


@pytest_twisted.ensureDeferred
async def test_a_registration_without_hooks_is_one_trip_to_the_database(db: Database) -> None:
    pool = await make_pool(db, TaskDefinition(), allowed_concurrent=2, maximum_units_per_worker=3)
    before = trips(db)
    registration = await pool.register({"worker_name": "w1", "agent_registration_id": "r1"})
    assert registration.agent is not None
    assert trips(db) - before == 1
    assert registration.init_task_data == {"n": 0}


@pytest_twisted.ensureDeferred
async def test_with_a_hook_the_stages_take_several_trips(db: Database) -> None:
    """The one-trip path is only for what the database can decide alone (the test above
    would pass if every registration took one trip for some other reason)."""
    pool = await make_pool(db, TaskDefinition(worker_can_do_unit=lambda w, u: True))
    before = trips(db)
    assert (await pool.register({"worker_name": "w1"})).agent is not None
    assert trips(db) - before > 1


@pytest_twisted.ensureDeferred
async def test_a_known_registration_id_goes_through_reconnection_then_back(db: Database) -> None:
    """An onboarding agent left from a life of the daemon with onboarding on: its page
    registering again gets a unit agent (stage 6 finds nothing to resume), under the
    same registration id, with the limits still counted in the one transaction."""
    pool = await make_pool(db, TaskDefinition(), allowed_concurrent=1)
    worker = await db.find_or_create_worker("mock", "w1")
    await db.create_onboarding_agent(pool.task_run.id, worker.id, "old", "r1", Status.WAITING)
    await db.set_agent_status("old", Status.APPROVED)
    registration = await pool.register({"worker_name": "w1", "agent_registration_id": "r1"})
    assert registration.agent is not None and not registration.reconnected
    stored = await db.find_agent_by_registration_id("r1")
    assert stored is not None and stored.agent_id == registration.agent.agent_id
    assert stored.kind == "unit"
    again = await pool.register({"worker_name": "w1", "agent_registration_id": "r1"})
    assert again.agent is registration.agent and again.reconnected
    other = await pool.register({"worker_name": "w1", "agent_registration_id": "r2"})
    assert other.failure_reason == FailureReason.TOO_MANY_CONCURRENT
