"""The SQLite file and the one thread that talks to it: opening, schema upgrades, transactions.

One connection on one thread (cp_min = cp_max = 1): every interaction runs
whole, one after another, off the reactor thread. Interactions are committed in
groups: those that queued while the last group ran go together into the next
transaction, with one commit for all; one that raises is rolled back alone, and
fails alone (run_in_one_transaction). A group with a write opens with BEGIN
IMMEDIATE so that even another process on the same file (the `architect` command)
cannot slip in between a read and the write that depends on it. That is what makes
a reservation atomic; the interactions of a group see each other's writes as if
run one after another, which they are.

The file is in WAL mode with synchronous = FULL and foreign keys on: readers
never wait for the writer, and a commit is on disk before any Deferred of its
group fires.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import Any, TypeVar

import attrs
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.private import private_file, private_folder
from architect.storage.interface import SchemaError, StorageError
from architect.storage.schema_versions import schema_plan, version_statements
from architect.storage.sqlite.sql import NulRefusingCursor

DEFAULT_DATABASE = "architect.sqlite3"
FILES_DIR = "files"
# Seconds a write waits for another process holding the file's write lock.
BUSY_TIMEOUT = 10.0

log = Logger()
T = TypeVar("T")


def open_engine(
    data_dir: Path,
    database: str,
    reactor: Any,
    clock: IReactorTime,
    schema_dir: Path,
    target_version: int,
) -> Deferred[SQLiteEngine]:
    """The engine on data_dir/database, made and brought to target_version as needed."""
    try:
        private_folder(data_dir)
        private_folder(data_dir / FILES_DIR)
    except OSError as e:
        return fail(StorageError(f"cannot create the data folder {data_dir}: {e.strerror}"))
    path = data_dir / database
    pool = adbapi.ConnectionPool(
        "sqlite3",
        str(path),
        check_same_thread=False,
        isolation_level=None,  # we issue BEGIN ourselves; adbapi commits or rolls back
        timeout=BUSY_TIMEOUT,
        cp_min=1,
        cp_max=1,
        cp_openfun=_prepare_connection,
        cp_reactor=reactor,
    )
    d: Deferred[Path | None] = pool.runWithConnection(
        _bring_schema_to, path, schema_dir, target_version
    )

    def opened(backup: Path | None) -> SQLiteEngine:
        if backup is not None:
            log.info(
                "Upgraded the database {path} to schema version {version};"
                " a copy from before the upgrade is at {backup}",
                path=str(path),
                version=target_version,
                backup=str(backup),
            )
        return SQLiteEngine(pool, data_dir, reactor, clock)

    def failed(failure: Any) -> Any:
        pool.close()
        if failure.check(sqlite3.DatabaseError) and not failure.check(StorageError):
            return fail(StorageError(f"cannot open the database {path}: {failure.value}"))
        return failure

    return d.addCallbacks(opened, failed)


def _prepare_connection(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA foreign_keys = ON")
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode.lower() != "wal":
        raise StorageError(f"the database cannot use WAL mode (it is in {mode} mode)")
    connection.execute("PRAGMA synchronous = FULL")


def _bring_schema_to(connection: Any, path: Path, schema_dir: Path, target: int) -> Path | None:
    """Create or upgrade the schema, all in one transaction (SQLite's DDL is transactional).

    An existing file is backed up before it is upgraded: the backup's path, or None.
    """
    backup = None
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {name for (name,) in cursor.fetchall()}
        plan = schema_plan(tables, cursor, target, schema_dir)
        if plan.current is not None and plan.steps:
            backup = _back_up(path, plan.current)
        for step in plan.steps:
            for statement in _statements(step.sql):
                try:
                    cursor.execute(statement)
                except sqlite3.Error as e:
                    raise SchemaError(f"{step.path} failed: {e}") from e
            for statement in version_statements(step.version):
                cursor.execute(statement)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    for made in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        private_file(made)  # SQLite gives its -wal and -shm files the database's mode
    return backup


def _back_up(path: Path, version: int) -> Path:
    """Copy the database file to <name>.v<version>.bak beside it, replacing an older copy.

    Called while the upgrading connection holds the write lock but has written
    nothing: a second connection reads exactly what is about to be upgraded (WAL
    lets it read meanwhile; the backup API refuses a connection that is writing).
    The copy is a single file in rollback-journal mode, and it gets its final name
    only once complete.
    """
    backup = path.with_name(f"{path.name}.v{version}.bak")
    partial = backup.with_name(backup.name + ".partial")
    try:
        partial.unlink(missing_ok=True)
        with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
        private_file(partial)
        os.replace(partial, backup)
    except (OSError, sqlite3.Error) as e:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        raise StorageError(
            f"cannot back up the database {path} to {backup} before upgrading it: {e}"
        ) from e
    return backup


def _statements(script: str) -> list[str]:
    """Split a script into single statements, leaving ";" inside strings and triggers alone."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if _has_code(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_code(pending.rstrip(";")):
        raise SchemaError(f"incomplete SQL statement at the end: {pending.strip()[:60]!r}")
    return statements


def _has_code(sql: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", sql, flags=re.DOTALL)
    return bool(without_comments.strip(" \t\r\n;"))


class SQLiteEngine:
    """The open file: runs query functions as transactions and closes once they are done."""

    def __init__(
        self, pool: adbapi.ConnectionPool, data_dir: Path, reactor: Any, clock: IReactorTime
    ) -> None:
        self._pool = pool
        self.data_dir = data_dir
        self.reactor = reactor
        self._clock = clock
        self._in_flight = 0
        self._closing = False
        self._pool_closed = False
        self._idle_waiters: list[Deferred[None]] = []
        self._queued: list[_Work] = []  # for the next group
        self._group_running = False
        self.groups = 0  # transactions run (for tests and benchmarks)
        # Told (seconds, interactions) of each committed transaction, on the reactor thread.
        self.commit_observers: list[Callable[[float, int], None]] = []

    def now(self) -> float:
        return self._clock.seconds()

    @staticmethod
    def run_group(connection: Any, group: list[_Work]) -> list[Any]:
        """One group as one transaction, in the database thread (another engine's own)."""
        return _run_group(connection, group)

    def run(self, write: bool, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run interaction(cursor, *args) in the database thread, in the next group's
        transaction; fires once that transaction is committed."""
        if self._closing:
            return fail(StorageError("the database is closed"))
        self._in_flight += 1
        d: Deferred[T] = Deferred()
        self._queued.append(_Work(write, interaction, args, d))
        self._next_group()

        def finished(result: Any) -> Any:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle_waiters:
                self._close_pool()
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        d.addBoth(finished)
        return d

    def _next_group(self) -> None:
        if self._group_running or not self._queued:
            return
        group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
        self._group_running = True
        self.groups += 1
        done = self._pool.runWithConnection(self.run_group, group)
        done.addBoth(self._group_done, group, self._clock.seconds())

    def _group_done(
        self, outcomes: list[Any] | Failure, group: list[_Work], started: float
    ) -> None:
        self._group_running = False
        if not isinstance(outcomes, Failure):
            took = self._clock.seconds() - started
            for observer in self.commit_observers:
                observer(took, len(group))
        for work, outcome in zip(group, _per_work(outcomes, len(group)), strict=True):
            if isinstance(outcome, Failure):
                work.deferred.errback(outcome)
            else:
                work.deferred.callback(outcome)
        self._next_group()

    def close(self) -> Deferred[None]:
        """Refuse new work, let running work finish, then close the connection."""
        self._closing = True
        if self._in_flight == 0:
            self._close_pool()
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def _close_pool(self) -> None:
        if not self._pool_closed:
            self._pool_closed = True
            self._pool.close()


# Interactions in one transaction at most: a group's latency stays bounded.
MAX_GROUP = 256


@attrs.define
class _Work:
    write: bool
    interaction: Callable[..., Any]
    args: tuple[Any, ...]
    deferred: Deferred[Any]


def _per_work(outcomes: list[Any] | Failure, count: int) -> list[Any]:
    """Each interaction's outcome; all fail alike when the group did (its commit)."""
    if isinstance(outcomes, Failure):
        return [outcomes] * count
    return outcomes


def _run_group(connection: Any, group: list[_Work]) -> list[Any]:
    cursor = connection.cursor()
    begin = "BEGIN IMMEDIATE" if any(work.write for work in group) else "BEGIN"
    checked = NulRefusingCursor(cursor)  # as on PostgreSQL, which cannot store a NUL
    return run_in_one_transaction(
        connection, cursor, checked, group, lambda: cursor.execute(begin), SQLITE_SAVEPOINTS
    )


@attrs.frozen
class Savepoints:
    """A dialect's statements for the savepoint each interaction gets once one failed."""

    take: str
    roll_back: str
    release: str


SQLITE_SAVEPOINTS = Savepoints("SAVEPOINT work", "ROLLBACK TO work", "RELEASE work")


def run_in_one_transaction(
    connection: Any,
    raw: Any,
    cursor: Any,
    group: list[_Work],
    begin: Callable[[], object],
    savepoints: Savepoints,
) -> list[Any]:
    """Run the group's interactions (on `cursor`) in one transaction, then commit once: a
    result or a Failure per interaction. A failed commit raises (the caller rolls back).

    Most groups fail nowhere: they run whole, without a savepoint per interaction. Once
    one raises (maybe after writing), nothing of the first pass is kept: the group runs
    again from the start, each interaction in a savepoint of its own (one that raises is
    rolled back alone, and fails alone), the failed one not again. Two passes at most.
    """
    begin()
    outcomes: list[Any] = []
    for work in group:
        try:
            outcomes.append(work.interaction(cursor, *work.args))
        except Exception:
            failed = Failure()
            break
    else:
        connection.commit()
        return outcomes
    failed_at = len(outcomes)
    raw.execute("ROLLBACK")
    begin()
    outcomes = []
    for index, work in enumerate(group):
        if index == failed_at:
            outcomes.append(failed)
            continue
        raw.execute(savepoints.take)
        try:
            outcomes.append(work.interaction(cursor, *work.args))
        except Exception:
            outcomes.append(Failure())
            raw.execute(savepoints.roll_back)
        raw.execute(savepoints.release)
    connection.commit()
    return outcomes


class EnginePart:
    """Base of the parts of SQLiteDatabase: each reaches the file through the one engine."""

    def __init__(self, engine: SQLiteEngine) -> None:
        self._engine = engine

    def watch_commits(self, observer: Callable[[float, int], None]) -> None:
        self._engine.commit_observers.append(observer)
