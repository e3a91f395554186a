"""SQLite storage on a real file: schema and upgrades, each record, restart, reservations."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList, gatherResults
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from architect.config import ConfigError, StorageConfig, load_config
from architect.protocol import Status
from architect.storage import (
    EVENTS_KEPT_PER_KIND,
    SCHEMA_DIR,
    SCHEMA_VERSION,
    ConnectionEvent,
    Database,
    Direction,
    EventRepeats,
    NoSuchAgent,
    SchemaError,
    StorageError,
    SubmissionKind,
    UnitStatus,
    open_database,
    open_sqlite_database,
)
from architect.storage import ConnectionEventKind as Kind
from architect.storage.sqlite import available_units_sql
from architect.storage.sqlite.sql import where

START = 1_700_000_000.0


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(START)
    return clock


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig, clock: Clock) -> AsyncIterator[Database]:
    """The database on each engine in turn (conftest's `engine`); a test that reads the
    SQLite file itself says so with SQLITE_ONLY."""
    database = await open_database(storage_config, clock=clock)
    yield database
    await database.close()


# For a test that reads the SQLite file with a second connection (query, raw) or its plan.
SQLITE_ONLY = pytest.mark.parametrize("engine", ["sqlite"])


def raw(tmp_path: Path) -> sqlite3.Connection:
    """A second, plain connection to the file: sees only what was committed."""
    return sqlite3.connect(tmp_path / "data" / "architect.sqlite3")


def query(tmp_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    connection = raw(tmp_path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


async def run_with_units(
    db: Database, assignments: int = 3, per_assignment: int = 1, name: str = "run-1"
) -> tuple[int, list[int]]:
    run = await db.find_or_create_task_run(name, {"task": "demo"})
    await db.add_assignments(run.id, [{"n": i} for i in range(assignments)], per_assignment)
    units = await db.list_units(run.id)
    return run.id, [unit.id for unit in units]


# --- schema, version, upgrades ---


@SQLITE_ONLY
@pytest_twisted.ensureDeferred
async def test_new_database_is_created_with_schema_version_and_wal(
    db: Database, tmp_path: Path
) -> None:
    assert db.data_dir == tmp_path / "data"
    assert (tmp_path / "data" / "files").is_dir()
    assert query(tmp_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    assert query(tmp_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in query(tmp_path, "SELECT name FROM sqlite_master")}
    assert {"task_runs", "units", "agents", "submissions", "live_updates"} <= tables


@SQLITE_ONLY
@pytest_twisted.ensureDeferred
async def test_foreign_keys_are_enforced_and_a_failed_write_leaves_nothing(
    db: Database,
) -> None:
    run_id, unit_ids = await run_with_units(db)
    with pytest.raises(sqlite3.IntegrityError):
        await db.reserve_unit(run_id, 9999, "a1", unit_ids)  # no worker 9999
    assert await db.get_agent("a1") is None
    assert [u.status for u in await db.list_units(run_id)] == [UnitStatus.AVAILABLE] * 3
    with pytest.raises(sqlite3.IntegrityError):
        await db.store_submission("no-such-agent", SubmissionKind.UNIT, {})


def write_schema_folder(folder: Path, upgrade: str) -> Path:
    folder.mkdir()
    v1 = (SCHEMA_DIR / "v1.sql").read_text()
    (folder / "v1.sql").write_text(v1)
    (folder / "upgrade_v1_to_v2.sql").write_text(upgrade)
    (folder / "v2.sql").write_text(v1 + "\n" + upgrade)
    return folder


UPGRADE = """
-- a note; with a semicolon in the comment
ALTER TABLE workers ADD COLUMN note TEXT NOT NULL DEFAULT 'none';
CREATE TABLE extra (id INTEGER PRIMARY KEY, label TEXT DEFAULT 'a;b');
"""


@pytest_twisted.ensureDeferred
async def test_an_existing_database_is_upgraded_in_place(tmp_path: Path) -> None:
    first = await open_sqlite_database(tmp_path / "data", target_version=1)
    worker = await first.find_or_create_worker("mock", "alice")
    await first.close()

    schema = write_schema_folder(tmp_path / "schema", UPGRADE)
    second = await open_sqlite_database(tmp_path / "data", schema_dir=schema, target_version=2)
    try:
        assert query(tmp_path, "SELECT version FROM schema_version") == [(2,)]
        assert query(tmp_path, "SELECT worker_name, note FROM workers") == [("alice", "none")]
        assert query(tmp_path, "SELECT label FROM extra") == []
        assert (await second.find_or_create_worker("mock", "alice")).id == worker.id
    finally:
        await second.close()


@pytest_twisted.ensureDeferred
async def test_a_new_database_gets_the_newest_full_schema(tmp_path: Path) -> None:
    schema = write_schema_folder(tmp_path / "schema", UPGRADE)
    database = await open_sqlite_database(tmp_path / "data", schema_dir=schema, target_version=2)
    await database.close()
    assert query(tmp_path, "SELECT version FROM schema_version") == [(2,)]
    assert query(tmp_path, "SELECT COUNT(*) FROM extra") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_a_failing_upgrade_changes_nothing(tmp_path: Path) -> None:
    await (await open_sqlite_database(tmp_path / "data", target_version=1)).close()
    bad = "CREATE TABLE extra (id INTEGER);\nALTER TABLE no_such_table ADD COLUMN x TEXT;\n"
    schema = write_schema_folder(tmp_path / "schema", bad)
    with pytest.raises(SchemaError, match=r"upgrade_v1_to_v2\.sql failed: .*no_such_table"):
        await open_sqlite_database(tmp_path / "data", schema_dir=schema, target_version=2)
    assert query(tmp_path, "SELECT version FROM schema_version") == [(1,)]
    assert query(tmp_path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == []


@pytest_twisted.ensureDeferred
async def test_a_missing_upgrade_step_is_refused_before_any_step_runs(tmp_path: Path) -> None:
    await (await open_sqlite_database(tmp_path / "data", target_version=1)).close()
    schema = write_schema_folder(tmp_path / "schema", UPGRADE)
    with pytest.raises(SchemaError, match=r"upgrade_v2_to_v3\.sql"):
        await open_sqlite_database(tmp_path / "data", schema_dir=schema, target_version=3)
    assert query(tmp_path, "SELECT version FROM schema_version") == [(1,)]


def table_columns(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """PRAGMA table_info of every table in the file: what a schema gives, however it got there."""
    connection = sqlite3.connect(path)
    try:
        tables = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
        return {
            name: connection.execute(f"PRAGMA table_info({name})").fetchall() for (name,) in tables
        }
    finally:
        connection.close()


@pytest_twisted.ensureDeferred
async def test_a_version_1_database_is_upgraded_to_the_current_version_keeping_everything(
    tmp_path: Path, clock: Clock
) -> None:
    old = await open_sqlite_database(tmp_path / "data", clock=clock, target_version=1)
    run_id = (await old.find_or_create_task_run("run-1", {"task": "demo"})).id
    # The units as version 1 stored them (today's add_assignments writes a later schema).
    connection = sqlite3.connect(tmp_path / "data" / "architect.sqlite3")
    with connection:
        for index in range(3):
            cursor = connection.execute(
                "INSERT INTO assignments (task_run_id, assignment_index, data, created_at)"
                " VALUES (?, ?, ?, 0)",
                (run_id, index, json.dumps({"n": index})),
            )
            connection.execute(
                "INSERT INTO units (task_run_id, assignment_id, unit_index, status, created_at)"
                " VALUES (?, ?, 0, 'available', 0)",
                (run_id, cursor.lastrowid),
            )
    connection.close()
    unit_ids = [unit.id for unit in await old.list_units(run_id)]
    alice = await old.find_or_create_worker("mock", "alice")
    await old.grant_qualification(alice.id, "onboarded", True)
    await old.reserve_unit(run_id, alice.id, "a1", unit_ids, "reg-1")
    await old.set_agent_status("a1", Status.IN_TASK)
    await old.create_onboarding_agent(run_id, alice.id, "onboarding-1", None, Status.ONBOARDING)
    await old.store_live_update("a1", Direction.CLIENT_BOUND, {"text": "hello"}, "u1")
    await old.store_live_update("a1", Direction.MEPHISTO_BOUND, {"text": "hi"}, "u1")
    await old.store_submission("onboarding-1", SubmissionKind.ONBOARDING, {"answer": 4})

    async def everything(db: Database) -> tuple[Any, ...]:
        return (
            await db.list_agents(),
            await db.list_units(run_id),
            await db.live_updates("a1"),
            await db.list_submissions(),
            await db.status_history("a1"),
            await db.get_qualifications(alice.id),
        )

    before = await everything(old)
    await old.close()
    assert query(tmp_path, "SELECT version FROM schema_version") == [(1,)]
    assert "init_task_data" not in {
        column[1] for column in table_columns(tmp_path / "data" / "architect.sqlite3")["agents"]
    }

    clock.advance(60)
    new = await open_sqlite_database(tmp_path / "data", clock=clock)
    try:
        assert query(tmp_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        assert await everything(new) == before
        # Version 3: each unit carries its assignment's index, for the ordered reads.
        assert query(tmp_path, "SELECT assignment_index FROM units ORDER BY id") == [
            (0,),
            (1,),
            (2,),
        ]
        assert [u.id for u in await new.available_units(run_id, frozenset(), None, 10)] == (
            unit_ids[1:]
        )
        assert query(tmp_path, "SELECT agent_id, init_task_data FROM agents ORDER BY seq") == [
            ("a1", None),
            ("onboarding-1", None),
        ]
        resumable = await new.resumable_agents(run_id)
        assert [(r.agent.agent_id, r.init_task_data) for r in resumable] == [
            ("a1", None),
            ("onboarding-1", None),
        ]
        assert resumable[0].live_updates == tuple(before[2])
        # The upgraded file takes the new data like a new one.
        await new.set_agent_init_data("a1", {"task": "resumed"})
        assert (await new.resumable_agents(run_id))[0].init_task_data == {"task": "resumed"}
    finally:
        await new.close()

    # Upgraded in place, the file has exactly the tables and columns of a new database.
    await (await open_sqlite_database(tmp_path / "fresh")).close()
    assert table_columns(tmp_path / "data" / "architect.sqlite3") == table_columns(
        tmp_path / "fresh" / "architect.sqlite3"
    )

    def indexes(path: Path) -> list[Any]:
        connection = sqlite3.connect(path)
        try:
            return connection.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
            ).fetchall()
        finally:
            connection.close()

    assert indexes(tmp_path / "data" / "architect.sqlite3") == indexes(
        tmp_path / "fresh" / "architect.sqlite3"
    )


@pytest_twisted.ensureDeferred
async def test_an_upgrade_first_backs_the_file_up_beside_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = await open_sqlite_database(data, target_version=1)
    run = await old.find_or_create_task_run("run-1", {"task": "demo"})
    await old.find_or_create_worker("mock", "alice")
    await old.close()
    backup = data / "architect.sqlite3.v1.bak"
    assert not backup.exists()

    with capturedLogs() as events:
        new = await open_sqlite_database(data)
    try:
        await new.find_or_create_worker("mock", "bob")  # after the upgrade: not in the backup
    finally:
        await new.close()

    # The backup is the file as it was: the old version, its rows, its schema.
    connection = sqlite3.connect(backup)
    try:
        assert connection.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert connection.execute("SELECT provider_type, worker_name FROM workers").fetchall() == [
            ("mock", "alice")
        ]
        assert connection.execute("SELECT id, name FROM task_runs").fetchall() == [
            (run.id, "run-1")
        ]
    finally:
        connection.close()
    assert "init_task_data" not in {column[1] for column in table_columns(backup)["agents"]}
    assert query(tmp_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    # The operator is told where the backup is.
    assert any(str(backup) in formatEvent(event) for event in events)

    # Opening the upgraded file again upgrades nothing, so backs nothing up.
    backup.unlink()
    await (await open_sqlite_database(data)).close()
    assert not backup.exists()
    # Nor does a new database get a backup.
    await (await open_sqlite_database(tmp_path / "fresh", "run.sqlite3")).close()
    assert (tmp_path / "fresh" / "run.sqlite3").is_file()
    assert list((tmp_path / "fresh").glob("*.bak*")) == []
    assert list(data.glob("*.bak*")) == []


@pytest_twisted.ensureDeferred
async def test_an_upgrade_that_cannot_be_backed_up_is_not_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await (await open_sqlite_database(data, target_version=1)).close()
    (data / "architect.sqlite3.v1.bak").mkdir()  # in the way of the copy
    with pytest.raises(StorageError, match=r"cannot back up the database .*v1\.bak"):
        await open_sqlite_database(data)
    assert query(tmp_path, "SELECT version FROM schema_version") == [(1,)]
    assert sorted(path.name for path in data.glob("*.bak*")) == ["architect.sqlite3.v1.bak"]


@pytest_twisted.ensureDeferred
async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    await (await open_sqlite_database(tmp_path / "data")).close()
    connection = raw(tmp_path)
    with connection:
        connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    connection.close()
    with pytest.raises(SchemaError, match="newer than this Architect knows"):
        await open_sqlite_database(tmp_path / "data")


@pytest_twisted.ensureDeferred
async def test_a_file_with_foreign_tables_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    connection = raw(tmp_path)
    connection.execute("CREATE TABLE something_else (x INTEGER)")
    connection.close()
    with pytest.raises(SchemaError, match="not ours"):
        await open_sqlite_database(tmp_path / "data")


@pytest_twisted.ensureDeferred
async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "architect.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError, match="cannot open the database"):
        await open_sqlite_database(tmp_path / "data")


# --- task runs, assignments, units ---


@pytest_twisted.ensureDeferred
async def test_a_task_run_is_found_by_name_with_the_config_it_first_ran_with(
    db: Database,
) -> None:
    first = await db.find_or_create_task_run("run-1", {"units": 10})
    again = await db.find_or_create_task_run("run-1", {"units": 99})
    other = await db.find_or_create_task_run("run-2", {})
    assert (first.id, first.name, first.config, first.created_at) == (
        first.id,
        "run-1",
        {"units": 10},
        START,
    )
    assert again == first
    assert other.id != first.id


@pytest_twisted.ensureDeferred
async def test_assignments_and_units_are_stored_once_per_index(db: Database) -> None:
    run = await db.find_or_create_task_run("run-1", {})
    assert await db.add_assignments(run.id, [{"text": "a"}, {"text": "b"}], 2) == 2
    # Restarting with one more line adds only that line.
    lines = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert await db.add_assignments(run.id, lines, 2) == 1
    units = await db.list_units(run.id)
    assert [(u.assignment_index, u.unit_index, u.assignment_data) for u in units] == [
        (0, 0, {"text": "a"}),
        (0, 1, {"text": "a"}),
        (1, 0, {"text": "b"}),
        (1, 1, {"text": "b"}),
        (2, 0, {"text": "c"}),
        (2, 1, {"text": "c"}),
    ]
    assert all(u.status == UnitStatus.AVAILABLE and u.agent_id is None for u in units)
    assert len({u.assignment_id for u in units}) == 3
    assert await db.get_unit(units[3].id) == units[3]
    assert await db.get_unit(123456) is None
    assert await db.count_units_by_status(run.id) == {UnitStatus.AVAILABLE: 6}


@pytest_twisted.ensureDeferred
async def test_appended_assignments_come_after_the_last_stored_one(db: Database) -> None:
    run = await db.find_or_create_task_run("run-1", {})
    other = await db.find_or_create_task_run("run-2", {})
    assert await db.append_assignments(run.id, [{"text": "a"}], 2) == 0  # an empty run
    await db.add_assignments(run.id, [{"text": "a"}, {"text": "b"}], 2)  # a restart: b
    await db.add_assignments(other.id, [{"n": n} for n in range(5)])
    assert await db.append_assignments(run.id, [{"text": "c"}, {"text": "d"}], 2) == 2
    assert await db.append_assignments(run.id, [], 2) == 4  # nothing: where it would go
    units = await db.list_units(run.id)
    assert [(u.assignment_index, u.unit_index, u.assignment_data["text"]) for u in units] == [
        (index, unit, text) for index, text in enumerate("abcd") for unit in (0, 1)
    ]
    # The ini file's units, read again (a restart or SIGHUP), add nothing over them.
    assert await db.add_assignments(run.id, [{"text": "a"}, {"text": "b"}], 2) == 0
    assert len(await db.list_units(other.id)) == 5


# --- workers and qualifications ---


@pytest_twisted.ensureDeferred
async def test_workers_are_found_by_provider_and_name(db: Database) -> None:
    alice = await db.find_or_create_worker("mock", "alice")
    assert await db.find_or_create_worker("mock", "alice") == alice
    other_provider = await db.find_or_create_worker("prolific", "alice")
    assert other_provider.id != alice.id
    assert await db.get_worker(alice.id) == alice
    assert await db.get_worker(9999) is None
    assert [w.worker_name for w in await db.list_workers()] == ["alice", "alice"]


@pytest_twisted.ensureDeferred
async def test_qualifications_are_granted_replaced_and_revoked(db: Database, clock: Clock) -> None:
    alice = await db.find_or_create_worker("mock", "alice")
    bob = await db.find_or_create_worker("mock", "bob")
    await db.grant_qualification(alice.id, "onboarded", True)
    await db.grant_qualification(bob.id, "skill", {"level": [1, 2]})
    clock.advance(5)
    await db.grant_qualification(alice.id, "onboarded", False)
    granted = await db.get_qualifications(alice.id)
    assert list(granted) == ["onboarded"]
    assert (granted["onboarded"].value, granted["onboarded"].granted_at) == (False, START + 5)
    assert (await db.get_qualifications(bob.id))["skill"].value == {"level": [1, 2]}
    assert await db.revoke_qualification(alice.id, "onboarded") is True
    assert await db.revoke_qualification(alice.id, "onboarded") is False
    assert await db.get_qualifications(alice.id) == {}
    assert list(await db.get_qualifications(bob.id)) == ["skill"]


# --- agents ---


@pytest_twisted.ensureDeferred
async def test_a_reservation_can_record_the_assignment_data_as_the_task_data(
    db: Database,
) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=3)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", [unit_ids[2]], init_from_assignment=True)
    await db.reserve_unit(run_id, alice.id, "a2", [unit_ids[1]])
    kept = {r.agent.agent_id: r.init_task_data for r in await db.resumable_agents(run_id)}
    assert kept == {"a1": {"n": 2}, "a2": None}


@pytest_twisted.ensureDeferred
async def test_reserve_takes_the_first_still_available_candidate(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=3)
    alice = await db.find_or_create_worker("mock", "alice")
    first = await db.reserve_unit(run_id, alice.id, "a1", [unit_ids[2], unit_ids[0]], "reg-1")
    assert first is not None and first.id == unit_ids[2]
    assert (first.status, first.agent_id) == (UnitStatus.RESERVED, "a1")
    second = await db.reserve_unit(run_id, alice.id, "a2", [unit_ids[2], unit_ids[0]])
    assert second is not None and second.id == unit_ids[0]

    agent = await db.get_agent("a1")
    assert agent is not None
    assert (agent.kind, agent.unit_id, agent.worker_id, agent.task_run_id) == (
        "unit",
        unit_ids[2],
        alice.id,
        run_id,
    )
    assert (agent.agent_registration_id, agent.status, agent.created_at) == (
        "reg-1",
        Status.NONE,
        START,
    )
    assert [c.status for c in await db.status_history("a1")] == [Status.NONE]

    # Every candidate taken: no unit, and no agent row either.
    assert await db.reserve_unit(run_id, alice.id, "a3", [unit_ids[2], unit_ids[0]]) is None
    assert await db.reserve_unit(run_id, alice.id, "a3", []) is None
    assert await db.get_agent("a3") is None
    # A unit of another run is not a candidate.
    other = await db.find_or_create_task_run("run-2", {})
    assert await db.reserve_unit(other.id, alice.id, "a3", [unit_ids[1]]) is None


@pytest_twisted.ensureDeferred
async def test_many_candidates_are_searched_in_order_past_the_first_chunk(
    db: Database,
) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=600)
    alice = await db.find_or_create_worker("mock", "alice")
    taken = unit_ids[:550]
    await gatherResults(
        [db.reserve_unit(run_id, alice.id, f"a{i}", [unit_id]) for i, unit_id in enumerate(taken)]
    )
    candidates = [*taken, unit_ids[590], unit_ids[560]]
    chosen = await db.reserve_unit(run_id, alice.id, "last", candidates)
    assert chosen is not None and chosen.id == unit_ids[590]


@pytest_twisted.ensureDeferred
async def test_concurrent_reservations_never_share_a_unit(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=10)
    workers = [await db.find_or_create_worker("mock", f"w{i}") for i in range(50)]
    results = await gatherResults(
        [
            db.reserve_unit(run_id, worker.id, f"agent-{i}", unit_ids)
            for i, worker in enumerate(workers)
        ]
    )
    reserved = [unit.id for unit in results if unit is not None]
    assert len(reserved) == 10
    assert sorted(reserved) == sorted(unit_ids)
    assert results.count(None) == 40
    units = await db.list_units(run_id)
    assert {u.status for u in units} == {UnitStatus.RESERVED}
    holders = [u.agent_id for u in units]
    assert len(set(holders)) == 10
    agents = await db.list_agents(run_id)
    assert len(agents) == 10
    assert {a.agent_id: a.unit_id for a in agents} == {u.agent_id: u.id for u in units}


@pytest_twisted.ensureDeferred
async def test_onboarding_agents_and_lookup_by_registration_id(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    onboarding = await db.create_onboarding_agent(
        run_id, alice.id, "onboarding-1", "reg-1", Status.ONBOARDING
    )
    assert (onboarding.kind, onboarding.unit_id, onboarding.status) == (
        "onboarding",
        None,
        Status.ONBOARDING,
    )
    assert await db.get_agent("onboarding-1") == onboarding
    assert await db.find_agent_by_registration_id("reg-1") == onboarding
    # After onboarding the same registration gets a unit agent: that one is found now.
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids, "reg-1")
    found = await db.find_agent_by_registration_id("reg-1")
    assert found is not None and found.agent_id == "a1"
    assert await db.find_agent_by_registration_id("reg-unknown") is None
    assert [a.agent_id for a in await db.list_agents(worker_id=alice.id)] == ["onboarding-1", "a1"]


@pytest_twisted.ensureDeferred
async def test_every_status_change_is_kept_with_its_time(db: Database, clock: Clock) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    clock.advance(1)
    assert await db.set_agent_status("a1", Status.ACCEPTED) is True
    clock.advance(1)
    assert await db.set_agent_status("a1", Status.IN_TASK) is True
    clock.advance(1)
    assert await db.set_agent_status("a1", Status.IN_TASK) is False
    clock.advance(1)
    assert await db.set_agent_status("a1", Status.COMPLETED, UnitStatus.COMPLETED) is True
    history = await db.status_history("a1")
    assert [(c.status, c.changed_at - START) for c in history] == [
        (Status.NONE, 0),
        (Status.ACCEPTED, 1),
        (Status.IN_TASK, 2),
        (Status.COMPLETED, 4),
    ]
    agent = await db.get_agent("a1")
    assert agent is not None and (agent.status, agent.updated_at) == (Status.COMPLETED, START + 4)
    unit = await db.get_unit(unit_ids[0])
    assert unit is not None and (unit.status, unit.agent_id) == (UnitStatus.COMPLETED, "a1")
    assert await db.count_agents_by_status(run_id) == {Status.COMPLETED: 1}
    assert await db.count_units_by_status(run_id) == {
        UnitStatus.COMPLETED: 1,
        UnitStatus.AVAILABLE: 2,
    }
    with pytest.raises(NoSuchAgent):
        await db.set_agent_status("nobody", Status.IN_TASK)
    with pytest.raises(ValueError, match="not a known agent status"):
        db.set_agent_status("a1", "finished")


@SQLITE_ONLY
@pytest_twisted.ensureDeferred
async def test_the_task_data_an_agent_was_given_is_kept(
    db: Database, tmp_path: Path, clock: Clock
) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids, status=Status.IN_TASK)
    clock.advance(5)
    recorded = db.set_agent_init_data("a1", {"text": "é", "items": [1, 2]})
    assert await recorded.addCallback(lambda result: result is None)
    assert query(tmp_path, "SELECT init_task_data FROM agents WHERE agent_id = 'a1'") == [
        ('{"text": "é", "items": [1, 2]}',)
    ]
    (resumable,) = await db.resumable_agents(run_id)
    assert resumable.init_task_data == {"text": "é", "items": [1, 2]}
    # Recording it is not a status change.
    agent = await db.get_agent("a1")
    assert agent is not None and agent.updated_at == START
    # Recorded again, it is replaced.
    await db.set_agent_init_data("a1", ["second"])
    assert (await db.resumable_agents(run_id))[0].init_task_data == ["second"]
    with pytest.raises(NoSuchAgent):
        await db.set_agent_init_data("nobody", {})
    with pytest.raises(TypeError):
        db.set_agent_init_data("a1", {"when": object()})
    assert (await db.resumable_agents(run_id))[0].init_task_data == ["second"]


@pytest_twisted.ensureDeferred
async def test_resumable_agents_are_the_active_agents_of_the_run_with_what_they_need(
    db: Database, clock: Clock
) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=4)
    other_run_id, other_unit_ids = await run_with_units(db, assignments=1, name="run-2")
    alice = await db.find_or_create_worker("mock", "alice")
    bob = await db.find_or_create_worker("mock", "bob")
    inbound, outbound = Direction.MEPHISTO_BOUND, Direction.CLIENT_BOUND

    await db.reserve_unit(run_id, alice.id, "done", [unit_ids[0]], status=Status.IN_TASK)
    await db.set_agent_init_data("done", {"n": 0})
    await db.set_agent_status("done", Status.COMPLETED, UnitStatus.COMPLETED)
    await db.reserve_unit(run_id, alice.id, "working", [unit_ids[1]], "reg-a")
    await db.set_agent_status("working", Status.IN_TASK)
    await db.set_agent_init_data("working", {"task": 1})
    await db.reserve_unit(run_id, bob.id, "gone", [unit_ids[2]], status=Status.IN_TASK)
    await db.set_agent_status("gone", Status.DISCONNECT, UnitStatus.AVAILABLE)
    await db.create_onboarding_agent(run_id, bob.id, "onboarding-1", "reg-b", Status.ONBOARDING)
    await db.set_agent_init_data("onboarding-1", {"onboarding": True})
    await db.reserve_unit(run_id, bob.id, "fresh", [unit_ids[3]])
    await db.reserve_unit(other_run_id, alice.id, "elsewhere", other_unit_ids, None, Status.IN_TASK)

    # Live updates of several agents, interleaved, both ways.
    for agent_id, direction, data in [
        ("working", outbound, {"text": "welcome"}),
        ("elsewhere", inbound, {"text": "other run"}),
        ("working", inbound, {"text": "hi"}),
        ("onboarding-1", inbound, {"answer": 4}),
        ("done", inbound, {"text": "finished"}),
        ("working", outbound, {"text": "noted"}),
        ("working", inbound, {"text": "bye"}),
    ]:
        clock.advance(1)
        await db.store_live_update(agent_id, direction, data)

    resumable = await db.resumable_agents(run_id)
    assert [r.agent.agent_id for r in resumable] == ["working", "onboarding-1", "fresh"]
    working, onboarding, fresh = resumable

    assert working.agent == await db.get_agent("working")
    assert working.agent.status == Status.IN_TASK
    assert working.worker == alice
    assert working.unit == await db.get_unit(unit_ids[1])
    assert working.unit is not None
    assert (working.unit.assignment_data, working.unit.status, working.unit.agent_id) == (
        {"n": 1},
        UnitStatus.RESERVED,
        "working",
    )
    assert working.init_task_data == {"task": 1}
    assert [(u.direction, u.data, u.created_at - START) for u in working.live_updates] == [
        (outbound, {"text": "welcome"}, 1),
        (inbound, {"text": "hi"}, 3),
        (outbound, {"text": "noted"}, 6),
        (inbound, {"text": "bye"}, 7),
    ]
    assert working.live_updates == tuple(await db.live_updates("working"))

    assert (onboarding.agent.kind, onboarding.agent.status) == ("onboarding", Status.ONBOARDING)
    assert (onboarding.worker, onboarding.unit) == (bob, None)
    assert onboarding.init_task_data == {"onboarding": True}
    assert [u.data for u in onboarding.live_updates] == [{"answer": 4}]

    assert (fresh.agent.status, fresh.worker, fresh.init_task_data, fresh.live_updates) == (
        Status.NONE,
        bob,
        None,
        (),
    )
    assert fresh.unit is not None and fresh.unit.assignment_data == {"n": 3}

    (elsewhere,) = await db.resumable_agents(other_run_id)
    assert elsewhere.agent.agent_id == "elsewhere"
    assert [u.data for u in elsewhere.live_updates] == [{"text": "other run"}]
    assert await db.resumable_agents(9999) == []


@pytest_twisted.ensureDeferred
async def test_releasing_a_unit_returns_it_to_the_pool_only_from_its_holder(
    db: Database,
) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=1)
    alice = await db.find_or_create_worker("mock", "alice")
    bob = await db.find_or_create_worker("mock", "bob")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    await db.set_agent_status("a1", Status.RETURNED, UnitStatus.AVAILABLE)
    unit = await db.get_unit(unit_ids[0])
    assert unit is not None and (unit.status, unit.agent_id) == (UnitStatus.AVAILABLE, None)
    await db.reserve_unit(run_id, bob.id, "b1", unit_ids)
    # A late release by the old agent does not take the unit from its new holder.
    await db.set_agent_status("a1", Status.DISCONNECT, UnitStatus.AVAILABLE)
    unit = await db.get_unit(unit_ids[0])
    assert unit is not None and (unit.status, unit.agent_id) == (UnitStatus.RESERVED, "b1")


@pytest_twisted.ensureDeferred
async def test_counting_helpers_for_the_pipeline(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=3, per_assignment=2)
    other_run = await db.find_or_create_task_run("run-2", {})
    await db.add_assignments(other_run.id, [{"n": 0}])
    other_units = [u.id for u in await db.list_units(other_run.id)]
    alice = await db.find_or_create_worker("mock", "alice")
    bob = await db.find_or_create_worker("mock", "bob")

    done = await db.reserve_unit(run_id, alice.id, "a-done", [unit_ids[0]])
    await db.set_agent_status("a-done", Status.COMPLETED, UnitStatus.COMPLETED)
    gone = await db.reserve_unit(run_id, alice.id, "a-gone", [unit_ids[2]])
    await db.set_agent_status("a-gone", Status.DISCONNECT, UnitStatus.AVAILABLE)
    working = await db.reserve_unit(run_id, alice.id, "a-working", [unit_ids[4]])
    await db.set_agent_status("a-working", Status.IN_TASK)
    await db.create_onboarding_agent(run_id, alice.id, "onboarding-a", None, Status.ONBOARDING)
    await db.reserve_unit(other_run.id, alice.id, "a-elsewhere", other_units)
    await db.reserve_unit(run_id, bob.id, "b-working", [unit_ids[1]])
    assert done and gone and working

    assert await db.count_worker_units(run_id, alice.id) == 2  # done + working, not the gone one
    assert await db.count_worker_units(run_id, bob.id) == 1
    assert await db.count_active_agents(alice.id) == 3
    assert await db.count_active_agents(alice.id, task_run_id=run_id) == 2
    assert await db.count_active_agents(alice.id, task_run_id=run_id, kind="unit") == 1
    assert await db.count_active_agents(alice.id, kind="onboarding") == 1
    worked = await db.worked_on(run_id, alice.id)
    assert worked.unit_ids == {done.id, gone.id, working.id}
    assert worked.assignment_ids == {done.assignment_id, gone.assignment_id, working.assignment_id}
    assert len(worked.assignment_ids) == 3
    assert (await db.worked_on(other_run.id, bob.id)).unit_ids == frozenset()


# --- restart ---


@pytest_twisted.ensureDeferred
async def test_restart_returns_units_of_gone_agents_and_keeps_completed_ones(
    storage_config: StorageConfig, clock: Clock
) -> None:
    first = await open_database(storage_config, clock=clock)
    run_id, unit_ids = await run_with_units(first, assignments=4)
    alice = await first.find_or_create_worker("mock", "alice")
    await first.reserve_unit(run_id, alice.id, "done", [unit_ids[0]])
    await first.set_agent_status("done", Status.COMPLETED, UnitStatus.COMPLETED)
    await first.reserve_unit(run_id, alice.id, "working", [unit_ids[1]])
    await first.set_agent_status("working", Status.IN_TASK)
    await first.reserve_unit(run_id, alice.id, "fresh", [unit_ids[2]])
    await first.create_onboarding_agent(run_id, alice.id, "onboarding-1", None, Status.ONBOARDING)
    await first.close()

    clock.advance(60)
    second = await open_database(storage_config, clock=clock)
    try:
        assert sorted(await second.recover_after_restart()) == [
            "fresh",
            "onboarding-1",
            "working",
        ]
        units = {u.id: u for u in await second.list_units(run_id)}
        assert (units[unit_ids[0]].status, units[unit_ids[0]].agent_id) == ("completed", "done")
        for unit_id in unit_ids[1:]:
            assert (units[unit_id].status, units[unit_id].agent_id) == ("available", None)
        statuses = {a.agent_id: a.status for a in await second.list_agents(run_id)}
        assert statuses == {
            "done": Status.COMPLETED,
            "working": Status.DISCONNECT,
            "fresh": Status.DISCONNECT,
            "onboarding-1": Status.DISCONNECT,
        }
        history = await second.status_history("working")
        assert [(c.status, c.changed_at) for c in history][-1] == (Status.DISCONNECT, START + 60)
        assert await second.recover_after_restart() == []
        # The returned units can be handed out again.
        again = await second.reserve_unit(run_id, alice.id, "again", unit_ids)
        assert again is not None and again.id == unit_ids[1]
    finally:
        await second.close()


@pytest_twisted.ensureDeferred
async def test_restart_can_keep_the_active_agents_of_one_run_for_resuming(
    storage_config: StorageConfig, clock: Clock
) -> None:
    first = await open_database(storage_config, clock=clock)
    kept_run_id, kept_units = await run_with_units(first, assignments=3)
    other_run_id, other_units = await run_with_units(first, assignments=3, name="run-2")
    alice = await first.find_or_create_worker("mock", "alice")
    bob = await first.find_or_create_worker("mock", "bob")
    await first.reserve_unit(kept_run_id, alice.id, "kept-working", [kept_units[0]])
    await first.set_agent_status("kept-working", Status.IN_TASK)
    await first.set_agent_init_data("kept-working", {"task": "kept"})
    await first.store_live_update("kept-working", Direction.MEPHISTO_BOUND, {"text": "hi"})
    await first.reserve_unit(kept_run_id, bob.id, "kept-done", [kept_units[1]])
    await first.set_agent_status("kept-done", Status.COMPLETED, UnitStatus.COMPLETED)
    await first.create_onboarding_agent(
        kept_run_id, bob.id, "kept-onboarding", None, Status.ONBOARDING
    )
    await first.reserve_unit(other_run_id, alice.id, "other-working", [other_units[0]])
    await first.set_agent_status("other-working", Status.IN_TASK)
    await first.reserve_unit(other_run_id, bob.id, "other-done", [other_units[1]])
    await first.set_agent_status("other-done", Status.COMPLETED, UnitStatus.COMPLETED)
    await first.create_onboarding_agent(other_run_id, bob.id, "other-onboarding")
    await first.close()

    clock.advance(60)
    second = await open_database(storage_config, clock=clock)
    try:
        kept_before = await second.list_agents(kept_run_id)
        kept_history = await second.status_history("kept-working")
        resumable_before = await second.resumable_agents(kept_run_id)

        recovered = await second.recover_after_restart(keep_task_run_id=kept_run_id)
        assert recovered == ["other-working", "other-onboarding"]

        # The kept run: agents, their history and their reserved units untouched.
        assert await second.list_agents(kept_run_id) == kept_before
        assert await second.status_history("kept-working") == kept_history
        units = {u.id: u for u in await second.list_units(kept_run_id)}
        assert [(units[u].status, units[u].agent_id) for u in kept_units] == [
            (UnitStatus.RESERVED, "kept-working"),
            (UnitStatus.COMPLETED, "kept-done"),
            (UnitStatus.AVAILABLE, None),
        ]
        assert await second.resumable_agents(kept_run_id) == resumable_before
        assert [r.agent.agent_id for r in resumable_before] == ["kept-working", "kept-onboarding"]

        # The other run: recovered as always.
        statuses = {a.agent_id: a.status for a in await second.list_agents(other_run_id)}
        assert statuses == {
            "other-working": Status.DISCONNECT,
            "other-done": Status.COMPLETED,
            "other-onboarding": Status.DISCONNECT,
        }
        history = await second.status_history("other-working")
        assert [(c.status, c.changed_at) for c in history][-1] == (Status.DISCONNECT, START + 60)
        units = {u.id: u for u in await second.list_units(other_run_id)}
        assert [(units[u].status, units[u].agent_id) for u in other_units] == [
            (UnitStatus.AVAILABLE, None),
            (UnitStatus.COMPLETED, "other-done"),
            (UnitStatus.AVAILABLE, None),
        ]
        assert await second.resumable_agents(other_run_id) == []

        assert await second.recover_after_restart(keep_task_run_id=kept_run_id) == []
        # Without the argument every run is recovered, the kept one too.
        assert await second.recover_after_restart() == ["kept-working", "kept-onboarding"]
        assert await second.resumable_agents(kept_run_id) == []
        unit = await second.get_unit(kept_units[0])
        assert unit is not None and (unit.status, unit.agent_id) == (UnitStatus.AVAILABLE, None)
    finally:
        await second.close()


# --- submissions and files ---


@pytest_twisted.ensureDeferred
async def test_submissions_are_stored_with_their_files(db: Database, clock: Clock) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    await db.create_onboarding_agent(run_id, alice.id, "onboarding-1")
    image = await db.write_file("../../photo of me.png", b"\x89PNG...", "image/png")
    assert image.stored_path.startswith("files/") and image.stored_path.endswith("photo_of_me.png")
    assert (db.data_dir / image.stored_path).read_bytes() == b"\x89PNG..."
    assert (image.original_name, image.size, image.mimetype) == (
        "../../photo of me.png",
        7,
        "image/png",
    )

    assert await db.store_submission("onboarding-1", "onboarding", {"answer": 4}) is True
    clock.advance(2)
    assert await db.store_submission("a1", "unit", {"text": "é"}, "req-1", [image]) is True
    assert await db.store_submission("a1", "metadata", {"feedback": "ok"}) is True

    everything = await db.list_submissions()
    assert [(s.agent_id, s.kind) for s in everything] == [
        ("onboarding-1", "onboarding"),
        ("a1", "unit"),
        ("a1", "metadata"),
    ]
    unit = (await db.list_submissions(agent_id="a1", kind="unit"))[0]
    assert (unit.data, unit.dedupe_key, unit.received_at, unit.files) == (
        {"text": "é"},
        "req-1",
        START + 2,
        (image,),
    )
    assert len(await db.list_submissions(task_run_id=run_id)) == 3
    assert await db.list_submissions(task_run_id=run_id + 1) == []


@SQLITE_ONLY
@pytest_twisted.ensureDeferred
async def test_a_repeated_submission_is_stored_once(db: Database, tmp_path: Path) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    assert await db.store_submission("a1", "unit", {"v": 1}, dedupe_key="packet-7") is True
    assert await db.store_submission("a1", "unit", {"v": 1}, dedupe_key="packet-7") is False
    assert query(tmp_path, "SELECT COUNT(*) FROM submissions") == [(1,)]
    # Without a key nothing can be recognised, so both are kept.
    assert await db.store_submission("a1", "metadata", {}) is True
    assert await db.store_submission("a1", "metadata", {}) is True
    assert query(tmp_path, "SELECT COUNT(*) FROM submissions") == [(3,)]
    # An agent's unit is submitted once: another try (another key, its client's new
    # timestamp, after a crash came between the commit and `completed`) is a repeat.
    assert await db.store_submission("a1", "unit", {"v": 2}, dedupe_key="packet-8") is False
    assert await db.store_submission("a1", "unit", {"v": 3}) is False
    assert query(tmp_path, "SELECT COUNT(*) FROM submissions WHERE kind = 'unit'") == [(1,)]


@pytest_twisted.ensureDeferred
async def test_a_submission_can_complete_its_agent_in_its_transaction(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    reserved = await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    assert reserved is not None
    await db.set_agent_status("a1", Status.IN_TASK)
    done = (Status.COMPLETED, UnitStatus.COMPLETED)
    assert await db.store_submission("a1", "unit", {"v": 1}, "k1", (), *done) is True
    assert [c.status for c in await db.status_history("a1")][-2:] == [
        Status.IN_TASK,
        Status.COMPLETED,
    ]
    unit = await db.get_unit(reserved.id)
    assert unit is not None and (unit.status, unit.agent_id) == (UnitStatus.COMPLETED, "a1")
    # A repeat changes nothing more; an unknown status is refused before any write.
    assert await db.store_submission("a1", "unit", {"v": 1}, "k1", (), *done) is False
    assert [c.status for c in await db.status_history("a1")].count("completed") == 1
    with pytest.raises(ValueError):
        await db.store_submission("a1", "metadata", {}, None, (), "finished-ish")
    assert len(await db.list_submissions(agent_id="a1")) == 1


@SQLITE_ONLY
@pytest_twisted.ensureDeferred
async def test_a_write_is_committed_when_its_deferred_fires(db: Database, tmp_path: Path) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    stored = db.store_submission("a1", "unit", {"final": True})
    seen: list[Any] = []
    stored.addCallback(
        lambda _: seen.extend(query(tmp_path, "SELECT agent_id, data FROM submissions"))
    )
    await stored
    assert seen == [("a1", '{"final": true}')]


@pytest_twisted.ensureDeferred
async def test_close_lets_pending_writes_finish_and_refuses_new_ones(
    tmp_path: Path,
) -> None:
    database = await open_sqlite_database(tmp_path / "data")
    pending = [database.find_or_create_worker("mock", f"w{i}") for i in range(20)]
    await database.close()
    results = await DeferredList(pending, consumeErrors=True)
    assert all(ok for ok, _ in results)
    assert query(tmp_path, "SELECT COUNT(*) FROM workers") == [(20,)]
    with pytest.raises(StorageError, match="closed"):
        await database.list_workers()


# --- live updates ---


@pytest_twisted.ensureDeferred
async def test_live_updates_are_logged_once_per_update_id_and_direction(
    db: Database,
) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    await db.reserve_unit(run_id, alice.id, "a2", unit_ids)
    inbound, outbound = Direction.MEPHISTO_BOUND, Direction.CLIENT_BOUND
    assert await db.store_live_update("a1", inbound, {"text": "hi"}, "u1") is True
    assert await db.store_live_update("a1", inbound, {"text": "hi"}, "u1") is False
    assert await db.store_live_update("a1", outbound, {"text": "hello"}, "u1") is True
    assert await db.store_live_update("a2", inbound, {"text": "hi"}, "u1") is True
    assert await db.store_live_update("a1", outbound, {"n": 2}) is True
    assert await db.store_live_update("a1", outbound, {"n": 2}) is True
    log = await db.live_updates("a1")
    assert [(u.direction, u.update_id, u.data) for u in log] == [
        (inbound, "u1", {"text": "hi"}),
        (outbound, "u1", {"text": "hello"}),
        (outbound, None, {"n": 2}),
        (outbound, None, {"n": 2}),
    ]
    assert [u.data for u in await db.live_updates("a1", inbound)] == [{"text": "hi"}]
    assert log[0].created_at == START
    with pytest.raises(ValueError, match="direction"):
        db.store_live_update("a1", "sideways", {})


@pytest_twisted.ensureDeferred
async def test_data_json_cannot_hold_is_refused_at_once(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    with pytest.raises(TypeError):
        db.store_submission("a1", "unit", {"when": object()})
    with pytest.raises(ValueError):
        db.store_live_update("a1", Direction.CLIENT_BOUND, {"x": float("nan")})
    assert await db.list_submissions() == []
    assert await db.live_updates("a1") == []


# --- config ---


def test_storage_config_defaults_beside_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "router.ini"
    path.write_text("")
    config = load_config(path)
    assert config.storage == StorageConfig(data_dir=tmp_path / "data", database="architect.sqlite3")
    path.write_text("[storage]\ndata_dir = var/db\ndatabase = run.sqlite3\n")
    config = load_config(path)
    assert config.storage == StorageConfig(data_dir=tmp_path / "var" / "db", database="run.sqlite3")


@pytest.mark.parametrize("value", ["", "sub/run.sqlite3", "..", "a\\b"])
def test_storage_database_must_be_a_plain_file_name(tmp_path: Path, value: str) -> None:
    path = tmp_path / "router.ini"
    path.write_text(f"[storage]\ndatabase = {value}\n")
    with pytest.raises(ConfigError, match=r"router.ini: \[storage\] database: "):
        load_config(path)


@pytest_twisted.ensureDeferred
async def test_open_database_follows_the_storage_config(tmp_path: Path) -> None:
    config = StorageConfig(data_dir=tmp_path / "new" / "folder", database="run.sqlite3")
    database = await open_database(config)
    await database.close()
    assert (tmp_path / "new" / "folder" / "run.sqlite3").is_file()
    assert (tmp_path / "new" / "folder" / "files").is_dir()


def test_where_keeps_the_filters_that_are_set() -> None:
    assert where({}) == ("", [])
    assert where({"a = ?": None, "b = ?": None}) == ("", [])
    assert where({"a = ?": 1, "b = ?": None, "c <> ?": "x"}) == (
        " WHERE a = ? AND c <> ?",
        [1, "x"],
    )
    assert where({"s IN (?, ?)": ["p", "q"], "(i, j) > (?, ?)": (3, 4), "k NOT IN (?)": (7,)}) == (
        " WHERE s IN (?, ?) AND (i, j) > (?, ?) AND k NOT IN (?)",
        ["p", "q", 3, 4, 7],
    )
    with pytest.raises(ValueError, match="takes 2 values, not 1"):
        where({"s IN (?, ?)": "p"})


@SQLITE_ONLY
@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("paged", "excluded"), [(False, 0), (True, 0), (True, 3)])
async def test_a_page_of_available_units_is_read_in_index_order_not_sorted(
    db: Database, tmp_path: Path, paged: bool, excluded: int
) -> None:
    """However many units a run has, a registration's page must not sort them all: the
    query plan reads them in order from an index (no temporary b-tree for ORDER BY)."""
    await run_with_units(db, assignments=50, per_assignment=2)
    plan = query(
        tmp_path,
        "EXPLAIN QUERY PLAN " + available_units_sql(paged, excluded),
        tuple(range(3 + excluded + (2 if paged else 0))),
    )
    steps = [row[-1] for row in plan]
    assert any("units_available_in_order" in step for step in steps), steps
    assert not any("TEMP B-TREE" in step for step in steps), steps


@pytest_twisted.ensureDeferred
async def test_settings_changed_at_run_time_are_kept_with_their_history(db: Database) -> None:
    run = await db.find_or_create_task_run("run-1", {})
    other = await db.find_or_create_task_run("run-2", {})
    await db.keep_setting(run.id, "allowed_concurrent", 3, 1, "admin")
    await db.keep_setting(run.id, "allowed_concurrent", 5, 1, "admin")
    await db.keep_setting(run.id, "timeout", 60.5, 30, "admin")
    kept = await db.kept_settings(run.id)
    assert {name: (s.value, s.ini_value) for name, s in kept.items()} == {
        "allowed_concurrent": (5, 1),
        "timeout": (60.5, 30),
    }
    await db.keep_setting(run.id, "timeout", None, 30, "reset")
    assert set(await db.kept_settings(run.id)) == {"allowed_concurrent"}
    assert await db.kept_settings(other.id) == {}
    changes = await db.setting_changes(run.id)
    assert [(c.name, c.value, c.reason) for c in changes] == [
        ("allowed_concurrent", 3, "admin"),
        ("allowed_concurrent", 5, "admin"),
        ("timeout", 60.5, "admin"),
        ("timeout", None, "reset"),
    ]


# --- connection events ---


@pytest_twisted.ensureDeferred
async def test_connection_events_are_kept_per_agent_in_time_order(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db, assignments=2)
    other_run, other_units = await run_with_units(db, name="run-2")
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    await db.reserve_unit(run_id, alice.id, "a2", unit_ids)
    await db.reserve_unit(other_run, alice.id, "b1", other_units)
    kept = await db.store_connection_events(
        [
            ConnectionEvent("a1", Kind.SOCKET_CLOSE, START + 5, code=1006),
            ConnectionEvent("a1", Kind.SOCKET_OPEN, START + 1),
            ConnectionEvent("nobody", Kind.SOCKET_OPEN, START + 2),  # no such agent: ignored
            ConnectionEvent("a2", Kind.HEARTBEAT_GAP, START + 3, seconds=14.5),
            ConnectionEvent("b1", Kind.RELOAD, START + 4),
        ]
    )
    assert kept == 4
    events, repeats = await db.connection_events(run_id)
    assert events == [
        ConnectionEvent("a1", Kind.SOCKET_OPEN, START + 1),
        ConnectionEvent("a2", Kind.HEARTBEAT_GAP, START + 3, seconds=14.5),
        ConnectionEvent("a1", Kind.SOCKET_CLOSE, START + 5, code=1006),
    ]
    assert repeats == []
    assert (await db.connection_events(other_run))[0] == [
        ConnectionEvent("b1", Kind.RELOAD, START + 4)
    ]
    with pytest.raises(ValueError, match="connection event"):
        await db.store_connection_events([ConnectionEvent("a1", "made_up", START)])


@pytest_twisted.ensureDeferred
async def test_connection_events_past_the_bound_are_counted_not_kept(db: Database) -> None:
    run_id, unit_ids = await run_with_units(db)
    alice = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run_id, alice.id, "a1", unit_ids)
    flapping = [
        ConnectionEvent("a1", Kind.RELOAD, START + i) for i in range(EVENTS_KEPT_PER_KIND + 30)
    ]
    # In two writes: the bound holds across them.
    assert await db.store_connection_events(flapping[:40]) == 40
    assert await db.store_connection_events(flapping[40:]) == EVENTS_KEPT_PER_KIND - 40
    # Of another kind, kept (the bound is per kind); counted by a sender: added to the count.
    await db.store_connection_events(
        [ConnectionEvent("a1", Kind.SOCKET_OPEN, START)],
        [
            EventRepeats("a1", Kind.RELOAD, 100, START + 500),
            EventRepeats("a1", Kind.SOCKET_CLOSE, 7, START + 20),
            EventRepeats("nobody", Kind.RELOAD, 5, START + 9),
        ],
    )
    events, repeats = await db.connection_events(run_id)
    reloads = [e for e in events if e.event == Kind.RELOAD]
    assert [e.happened_at for e in reloads] == [START + i for i in range(EVENTS_KEPT_PER_KIND)]
    assert [e.event for e in events].count(Kind.SOCKET_OPEN) == 1
    assert repeats == [
        EventRepeats("a1", Kind.SOCKET_CLOSE, 7, START + 20),
        EventRepeats("a1", Kind.RELOAD, 30 + 100, START + 500),
    ]
    # An older count does not move the last time back.
    await db.store_connection_events([], [EventRepeats("a1", Kind.RELOAD, 1, START + 1)])
    _, repeats = await db.connection_events(run_id)
    assert (repeats[-1].repeats, repeats[-1].last_at) == (131, START + 500)
