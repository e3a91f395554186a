"""The engines commit interactions in groups: one transaction for all that queued while
the last ran; one that raises fails alone and leaves nothing (the group runs again,
each interaction in a savepoint of its own)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import DeferredList

from architect.config import StorageConfig
from architect.storage import Database, open_database
from architect.storage.postgresql.database import PostgreSQLDatabase
from architect.storage.sqlite.database import SQLiteDatabase, open_sqlite_database
from architect.storage.sqlite.engine import SQLiteEngine


@pytest_twisted.async_yield_fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteDatabase]:
    database = await open_sqlite_database(tmp_path / "data")
    yield database
    await database.close()


def engine_of(database: Database) -> SQLiteEngine:
    """The engine under a database of either kind (PostgreSQL's engine is a SQLiteEngine)."""
    assert isinstance(database, SQLiteDatabase | PostgreSQLDatabase)
    return database._engine


def committed(tmp_path: Path, sql: str) -> list[Any]:
    """What a second connection sees: only what is committed."""
    connection = sqlite3.connect(tmp_path / "data" / "architect.sqlite3")
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def create_table(cursor: Any) -> None:
    cursor.execute("CREATE TABLE IF NOT EXISTS notes (n INTEGER)")


def insert(cursor: Any, n: int) -> int:
    cursor.execute("INSERT INTO notes (n) VALUES (?)", (n,))
    return n


def insert_then_fail(cursor: Any, n: int) -> int:
    cursor.execute("INSERT INTO notes (n) VALUES (?)", (n,))
    raise ValueError(f"task data {n} is odd")


@pytest_twisted.ensureDeferred
async def test_writes_queued_together_share_one_commit_and_fire_once_it_is_on_disk(
    tmp_path: Path, db: SQLiteDatabase
) -> None:
    engine = engine_of(db)
    await engine.run(True, create_table)
    before = engine.groups
    seen: list[list[Any]] = []

    def check_committed(n: int) -> int:
        seen.append(committed(tmp_path, f"SELECT n FROM notes WHERE n = {n}"))
        return n

    writes = [engine.run(True, insert, n).addCallback(check_committed) for n in range(50)]
    results = await DeferredList(writes, fireOnOneErrback=True)
    assert [value for _, value in results] == list(range(50))
    assert engine.groups - before <= 2  # the first alone, the rest together (not 50)
    assert all(rows for rows in seen)  # each fired once its row was committed


@pytest_twisted.ensureDeferred
async def test_an_interaction_that_raises_fails_alone_and_leaves_nothing(
    tmp_path: Path, db: SQLiteDatabase
) -> None:
    engine = engine_of(db)
    await engine.run(True, create_table)
    first = engine.run(True, insert, 1)
    odd = engine.run(True, insert_then_fail, 2)
    last = engine.run(True, insert, 3)
    assert await first == 1
    with pytest.raises(ValueError, match="task data 2 is odd"):
        await odd
    assert await last == 3
    assert committed(tmp_path, "SELECT n FROM notes ORDER BY n") == [(1,), (3,)]


# --- a group with a failure in it, on each engine ---


@pytest_twisted.async_yield_fixture
async def any_db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config)
    yield database
    await database.close()


def create_notes(cursor: Any) -> None:
    cursor.execute("CREATE TABLE IF NOT EXISTS notes (n INTEGER)")
    cursor.execute("DELETE FROM notes")


def held(cursor: Any, gate: threading.Event) -> None:
    """Keeps the database thread until the gate opens: what queues meanwhile is one group."""
    if not gate.wait(10):
        raise RuntimeError("the test never opened the gate")


def counted_insert(calls: list[int], fail: bool) -> Any:
    def interaction(cursor: Any, n: int) -> int:
        calls.append(n)
        cursor.execute("INSERT INTO notes (n) VALUES (?)", (n,))
        if fail:
            raise ValueError(f"task data {n} is odd")
        return n

    return interaction


def notes(cursor: Any) -> list[int]:
    cursor.execute("SELECT n FROM notes ORDER BY n")
    return [n for (n,) in cursor.fetchall()]


@pytest_twisted.ensureDeferred
async def test_a_failure_inside_a_group_fails_alone_runs_once_and_leaves_no_write(
    any_db: Database,
) -> None:
    engine = engine_of(any_db)
    await engine.run(True, create_notes)
    gate = threading.Event()
    blocker = engine.run(False, held, gate)
    calls: list[int] = []
    ok, odd = counted_insert(calls, fail=False), counted_insert(calls, fail=True)
    groups = engine.groups
    queued = [engine.run(True, ok, 1), engine.run(True, odd, 2), engine.run(True, ok, 3)]
    gate.set()
    await blocker
    assert await queued[0] == 1
    with pytest.raises(ValueError, match="task data 2 is odd"):
        await queued[1]
    assert await queued[2] == 3
    assert engine.groups - groups == 1  # the three in one transaction
    assert await engine.run(False, notes) == [1, 3]  # the failed one's insert is gone
    # The one before it ran again once the group started over; the failed one did not.
    assert calls == [1, 2, 1, 3]


@pytest_twisted.ensureDeferred
async def test_a_group_without_failures_runs_each_interaction_once(any_db: Database) -> None:
    engine = engine_of(any_db)
    await engine.run(True, create_notes)
    gate = threading.Event()
    blocker = engine.run(False, held, gate)
    calls: list[int] = []
    ok = counted_insert(calls, fail=False)
    queued = [engine.run(True, ok, n) for n in range(5)]
    gate.set()
    await blocker
    assert [await d for d in queued] == list(range(5))
    assert calls == list(range(5))
    assert await engine.run(False, notes) == list(range(5))
