"""The embedded database: one SQLite file in the data folder, reached through adbapi.

One connection on one thread (cp_min = cp_max = 1): every interaction runs
whole, one after another, off the reactor thread. Each interaction is one
transaction; writes open it with BEGIN IMMEDIATE so that even another process
on the same file (the `architect` command) cannot slip in between a read and
the write that depends on it. That is what makes a reservation atomic.

The file is in WAL mode with synchronous = FULL and foreign keys on: readers
never wait for the writer, and a commit is on disk before its Deferred fires.

The SQL is plain and portable. Placeholders are "?" (sqlite3's qmark
paramstyle); a PostgreSQL backend through psycopg would use "%s" (format
paramstyle) in the same places, and "INSERT ... RETURNING id" where this code
reads cursor.lastrowid. The functions that run in the database thread take a
cursor and plain values, so such a backend can reuse their shape.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool

from architect.config import StorageConfig
from architect.protocol import Status
from architect.storage.interface import (
    COUNTED_STATUSES,
    AgentKind,
    Database,
    Direction,
    GrantedQualification,
    LiveUpdate,
    NoSuchAgent,
    ResumableAgent,
    SchemaError,
    StatusChange,
    StorageError,
    StoredAgent,
    Submission,
    SubmissionFile,
    SubmissionKind,
    TaskRun,
    Unit,
    UnitStatus,
    WorkedOn,
    Worker,
)
from architect.storage.schema_versions import SCHEMA_DIR, SCHEMA_VERSION, full_schema, upgrade_steps

DEFAULT_DATABASE = "architect.sqlite3"
FILES_DIR = "files"
# Seconds a write waits for another process holding the file's write lock.
BUSY_TIMEOUT = 10.0
# Most "?" in one IN (...) list; SQLite's own limit is far higher.
_IN_CHUNK = 500

T = TypeVar("T")


class Cursor(Protocol):
    """What the functions below use of a DB-API cursor (adbapi's Transaction)."""

    rowcount: int
    lastrowid: int | None

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


# --- opening ---


def open_database(
    config: StorageConfig, reactor: Any = None, clock: IReactorTime | None = None
) -> Deferred[Database]:
    """The database the [storage] section names, created or upgraded as needed."""
    d = open_sqlite_database(config.data_dir, config.database, reactor=reactor, clock=clock)
    return d.addCallback(_as_database)


def _as_database(database: SQLiteDatabase) -> Database:
    # Also makes mypy check that SQLiteDatabase provides the whole Database interface.
    return database


def open_sqlite_database(
    data_dir: Path,
    database: str = DEFAULT_DATABASE,
    *,
    reactor: Any = None,
    clock: IReactorTime | None = None,
    schema_dir: Path = SCHEMA_DIR,
    target_version: int = SCHEMA_VERSION,
) -> Deferred[SQLiteDatabase]:
    """Open (creating the folder and file if missing) and bring the schema to target_version.

    Fails with SchemaError if the file's schema cannot be brought there, and
    with StorageError if the folder cannot be made.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    data_dir = Path(data_dir)
    try:
        (data_dir / FILES_DIR).mkdir(parents=True, exist_ok=True)
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
    d: Deferred[Any] = pool.runWithConnection(_bring_schema_to, schema_dir, target_version)

    def opened(_: object) -> SQLiteDatabase:
        return SQLiteDatabase(pool, data_dir, reactor, clock or reactor)

    def failed(failure: Any) -> Any:
        pool.close()
        if failure.check(sqlite3.DatabaseError) and not failure.check(StorageError):
            return fail(StorageError(f"cannot open the database {path}: {failure.value}"))
        return failure

    d.addCallbacks(opened, failed)
    return d


def _prepare_connection(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA foreign_keys = ON")
    (mode,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode.lower() != "wal":
        raise StorageError(f"the database cannot use WAL mode (it is in {mode} mode)")
    connection.execute("PRAGMA synchronous = FULL")


def _bring_schema_to(connection: Any, schema_dir: Path, target: int) -> None:
    """Create or upgrade the schema, all in one transaction (SQLite's DDL is transactional)."""
    cursor = connection.cursor()
    cursor.execute("BEGIN IMMEDIATE")
    try:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {name for (name,) in cursor.fetchall()}
        if "schema_version" not in tables:
            if tables:
                raise SchemaError("the file holds tables but no schema_version: not ours")
            steps = [(target, full_schema(target, schema_dir))]
            fresh = True
        else:
            fresh = False
            cursor.execute("SELECT version FROM schema_version")
            rows = cursor.fetchall()
            if len(rows) != 1:
                raise SchemaError(f"schema_version holds {len(rows)} rows instead of one")
            steps = upgrade_steps(rows[0][0], target, schema_dir)
        for version, sql in steps:
            name = f"v{version}.sql" if fresh else f"upgrade_v{version - 1}_to_v{version}.sql"
            for statement in _statements(sql):
                try:
                    cursor.execute(statement)
                except sqlite3.Error as e:
                    raise SchemaError(f"{schema_dir / name} failed: {e}") from e
            cursor.execute("DELETE FROM schema_version")
            cursor.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        connection.commit()
    except BaseException:
        connection.rollback()
        raise


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


# --- the database ---


class SQLiteDatabase:
    """Database on an SQLite file. Build it with open_sqlite_database or open_database."""

    def __init__(
        self, pool: adbapi.ConnectionPool, data_dir: Path, reactor: Any, clock: IReactorTime
    ) -> None:
        self._pool = pool
        self._data_dir = data_dir
        self._reactor = reactor
        self._clock = clock
        self._in_flight = 0
        self._closing = False
        self._pool_closed = False
        self._idle_waiters: list[Deferred[None]] = []

    @property
    def data_dir(self) -> Path:
        return self._data_dir

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

    def _run(self, write: bool, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run interaction(cursor, *args) as one transaction in the database thread."""
        if self._closing:
            return fail(StorageError("the database is closed"))
        self._in_flight += 1
        d: Deferred[T] = self._pool.runInteraction(_transaction, write, interaction, *args)

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

    def _now(self) -> float:
        return self._clock.seconds()

    # --- task runs, assignments, units ---

    def find_or_create_task_run(self, name: str, config: Mapping[str, Any]) -> Deferred[TaskRun]:
        return self._run(True, _find_or_create_task_run, name, _encode(dict(config)), self._now())

    def get_task_run(self, name: str) -> Deferred[TaskRun | None]:
        return self._run(False, _get_task_run, name)

    def list_task_runs(self) -> Deferred[list[TaskRun]]:
        return self._run(False, _list_task_runs)

    def add_assignments(
        self, task_run_id: int, assignments: Sequence[Any], units_per_assignment: int = 1
    ) -> Deferred[int]:
        if units_per_assignment < 1:
            raise ValueError(f"units_per_assignment must be at least 1, not {units_per_assignment}")
        encoded = [_encode(data) for data in assignments]
        return self._run(
            True, _add_assignments, task_run_id, encoded, units_per_assignment, self._now()
        )

    def get_unit(self, unit_id: int) -> Deferred[Unit | None]:
        return self._run(False, _get_unit, unit_id)

    def list_units(self, task_run_id: int, status: str | None = None) -> Deferred[list[Unit]]:
        if status is not None:
            _check(status, UnitStatus.ALL, "unit status")
        return self._run(False, _list_units, task_run_id, status)

    def available_units(
        self,
        task_run_id: int,
        excluded_assignment_ids: Collection[int] = (),
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> Deferred[list[Unit]]:
        return self._run(
            False, _available_units, task_run_id, tuple(excluded_assignment_ids), after, limit
        )

    def count_units_by_status(self, task_run_id: int) -> Deferred[dict[str, int]]:
        return self._run(
            False,
            _count_by,
            "SELECT status, COUNT(*) FROM units WHERE task_run_id = ? GROUP BY status",
            (task_run_id,),
        )

    # --- workers and qualifications ---

    def find_or_create_worker(self, provider_type: str, worker_name: str) -> Deferred[Worker]:
        return self._run(True, _find_or_create_worker, provider_type, worker_name, self._now())

    def get_worker(self, worker_id: int) -> Deferred[Worker | None]:
        return self._run(False, _get_worker, worker_id)

    def list_workers(self) -> Deferred[list[Worker]]:
        return self._run(False, _list_workers)

    def grant_qualification(self, worker_id: int, name: str, value: Any) -> Deferred[None]:
        return self._run(True, _grant_qualification, worker_id, name, _encode(value), self._now())

    def revoke_qualification(self, worker_id: int, name: str) -> Deferred[bool]:
        return self._run(True, _revoke_qualification, worker_id, name)

    def get_qualifications(self, worker_id: int) -> Deferred[dict[str, GrantedQualification]]:
        return self._run(False, _get_qualifications, worker_id)

    # --- agents ---

    def reserve_unit(
        self,
        task_run_id: int,
        worker_id: int,
        agent_id: str,
        candidate_unit_ids: Iterable[int],
        agent_registration_id: str | None = None,
        status: str = Status.NONE,
        init_from_assignment: bool = False,
    ) -> Deferred[Unit | None]:
        _check(status, Status.ALL, "agent status")
        return self._run(
            True,
            _reserve_unit,
            task_run_id,
            worker_id,
            agent_id,
            list(candidate_unit_ids),
            agent_registration_id,
            status,
            init_from_assignment,
            self._now(),
        )

    def create_onboarding_agent(
        self,
        task_run_id: int,
        worker_id: int,
        agent_id: str,
        agent_registration_id: str | None = None,
        status: str = Status.NONE,
    ) -> Deferred[StoredAgent]:
        _check(status, Status.ALL, "agent status")
        return self._run(
            True,
            _create_onboarding_agent,
            task_run_id,
            worker_id,
            agent_id,
            agent_registration_id,
            status,
            self._now(),
        )

    def get_agent(self, agent_id: str) -> Deferred[StoredAgent | None]:
        return self._run(False, _get_agent, agent_id)

    def find_agent_by_registration_id(
        self, agent_registration_id: str
    ) -> Deferred[StoredAgent | None]:
        return self._run(False, _find_agent_by_registration_id, agent_registration_id)

    def list_agents(
        self, task_run_id: int | None = None, worker_id: int | None = None
    ) -> Deferred[list[StoredAgent]]:
        return self._run(False, _list_agents, task_run_id, worker_id)

    def set_agent_status(
        self, agent_id: str, status: str, unit_status: str | None = None
    ) -> Deferred[bool]:
        _check(status, Status.ALL, "agent status")
        if unit_status is not None:
            _check(unit_status, UnitStatus.ALL, "unit status")
        return self._run(True, _set_agent_status, agent_id, status, unit_status, self._now())

    def status_history(self, agent_id: str) -> Deferred[list[StatusChange]]:
        return self._run(False, _status_history, agent_id)

    def count_agents_by_status(self, task_run_id: int) -> Deferred[dict[str, int]]:
        return self._run(
            False,
            _count_by,
            "SELECT status, COUNT(*) FROM agents WHERE task_run_id = ? GROUP BY status",
            (task_run_id,),
        )

    def count_active_agents(
        self, worker_id: int, task_run_id: int | None = None, kind: str | None = None
    ) -> Deferred[int]:
        if kind is not None:
            _check(kind, AgentKind.ALL, "agent kind")
        return self._run(False, _count_active_agents, worker_id, task_run_id, kind)

    def count_worker_units(self, task_run_id: int, worker_id: int) -> Deferred[int]:
        return self._run(False, _count_worker_units, task_run_id, worker_id)

    def worked_on(self, task_run_id: int, worker_id: int) -> Deferred[WorkedOn]:
        return self._run(False, _worked_on, task_run_id, worker_id)

    def set_agent_init_data(self, agent_id: str, data: Any) -> Deferred[None]:
        return self._run(True, _set_agent_init_data, agent_id, _encode(data))

    def resumable_agents(self, task_run_id: int) -> Deferred[list[ResumableAgent]]:
        return self._run(False, _resumable_agents, task_run_id)

    def recover_after_restart(self, keep_task_run_id: int | None = None) -> Deferred[list[str]]:
        return self._run(True, _recover_after_restart, keep_task_run_id, self._now())

    # --- submissions and files ---

    def write_file(
        self, original_name: str, content: bytes, mimetype: str
    ) -> Deferred[SubmissionFile]:
        relative = f"{FILES_DIR}/{uuid.uuid4().hex}-{_safe_file_name(original_name)}"
        target = self._data_dir / relative

        def write() -> SubmissionFile:
            with target.open("xb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            return SubmissionFile(original_name, relative, len(content), mimetype)

        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), write)

    def store_submission(
        self,
        agent_id: str,
        kind: str,
        data: Any,
        dedupe_key: str | None = None,
        files: Sequence[SubmissionFile] = (),
    ) -> Deferred[bool]:
        _check(kind, SubmissionKind.ALL, "submission kind")
        return self._run(
            True,
            _store_submission,
            agent_id,
            kind,
            _encode(data),
            dedupe_key,
            list(files),
            self._now(),
        )

    def list_submissions(
        self, agent_id: str | None = None, task_run_id: int | None = None, kind: str | None = None
    ) -> Deferred[list[Submission]]:
        if kind is not None:
            _check(kind, SubmissionKind.ALL, "submission kind")
        return self._run(False, _list_submissions, agent_id, task_run_id, kind)

    # --- live updates ---

    def store_live_update(
        self, agent_id: str, direction: str, data: Any, update_id: str | None = None
    ) -> Deferred[bool]:
        _check(direction, Direction.ALL, "direction")
        return self._run(
            True, _store_live_update, agent_id, direction, _encode(data), update_id, self._now()
        )

    def live_updates(
        self, agent_id: str, direction: str | None = None
    ) -> Deferred[list[LiveUpdate]]:
        if direction is not None:
            _check(direction, Direction.ALL, "direction")
        return self._run(False, _live_updates, agent_id, direction)


# --- helpers run in the reactor thread ---


def _encode(value: Any) -> str:
    """JSON text of value; raises TypeError/ValueError at once for what JSON cannot hold."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _check(value: str, allowed: frozenset[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{value!r} is not a known {what} (known: {', '.join(sorted(allowed))})")


def _safe_file_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return safe[-100:] or "file"


# --- interactions: each runs in the database thread as one transaction ---


def _transaction(cursor: Cursor, write: bool, interaction: Callable[..., T], *args: Any) -> T:
    # adbapi commits when the interaction returns and rolls back when it raises.
    cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    return interaction(cursor, *args)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _inserted_id(cursor: Cursor) -> int:
    if cursor.lastrowid is None:
        raise StorageError("the database gave no id for a new row")
    return cursor.lastrowid


def _count_by(cursor: Cursor, sql: str, params: Sequence[Any]) -> dict[str, int]:
    cursor.execute(sql, params)
    return {key: count for key, count in cursor.fetchall()}


_TASK_RUN_COLUMNS = "SELECT id, name, config, created_at FROM task_runs"


def _task_run(row: Sequence[Any]) -> TaskRun:
    return TaskRun(row[0], row[1], json.loads(row[2]), row[3])


def _get_task_run(cursor: Cursor, name: str) -> TaskRun | None:
    cursor.execute(_TASK_RUN_COLUMNS + " WHERE name = ?", (name,))
    row = cursor.fetchone()
    return None if row is None else _task_run(row)


def _list_task_runs(cursor: Cursor) -> list[TaskRun]:
    cursor.execute(_TASK_RUN_COLUMNS + " ORDER BY id")
    return [_task_run(row) for row in cursor.fetchall()]


def _find_or_create_task_run(cursor: Cursor, name: str, config: str, now: float) -> TaskRun:
    cursor.execute("SELECT id, name, config, created_at FROM task_runs WHERE name = ?", (name,))
    row = cursor.fetchone()
    if row is None:
        cursor.execute(
            "INSERT INTO task_runs (name, config, created_at) VALUES (?, ?, ?)", (name, config, now)
        )
        row = (_inserted_id(cursor), name, config, now)
    return TaskRun(row[0], row[1], json.loads(row[2]), row[3])


def _add_assignments(
    cursor: Cursor, task_run_id: int, encoded: list[str], units_per_assignment: int, now: float
) -> int:
    cursor.execute("SELECT assignment_index FROM assignments WHERE task_run_id = ?", (task_run_id,))
    existing = {index for (index,) in cursor.fetchall()}
    added = 0
    for index, data in enumerate(encoded):
        if index in existing:
            continue
        cursor.execute(
            "INSERT INTO assignments (task_run_id, assignment_index, data, created_at)"
            " VALUES (?, ?, ?, ?)",
            (task_run_id, index, data, now),
        )
        assignment_id = _inserted_id(cursor)
        for unit_index in range(units_per_assignment):
            cursor.execute(
                "INSERT INTO units (task_run_id, assignment_id, assignment_index, unit_index,"
                " status, agent_id, created_at) VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (task_run_id, assignment_id, index, unit_index, UnitStatus.AVAILABLE, now),
            )
        added += 1
    return added


_UNIT_COLUMNS = (
    "SELECT u.id, u.task_run_id, u.assignment_id, a.assignment_index, u.unit_index, a.data,"
    " u.status, u.agent_id FROM units u JOIN assignments a ON a.id = u.assignment_id"
)


def _unit(row: Sequence[Any]) -> Unit:
    return Unit(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7])


def _get_unit(cursor: Cursor, unit_id: int) -> Unit | None:
    cursor.execute(_UNIT_COLUMNS + " WHERE u.id = ?", (unit_id,))
    row = cursor.fetchone()
    return None if row is None else _unit(row)


def _list_units(cursor: Cursor, task_run_id: int, status: str | None) -> list[Unit]:
    sql = _UNIT_COLUMNS + " WHERE u.task_run_id = ?"
    params: list[Any] = [task_run_id]
    if status is not None:
        sql += " AND u.status = ?"
        params.append(status)
    cursor.execute(sql + " ORDER BY a.assignment_index, u.unit_index", params)
    return [_unit(row) for row in cursor.fetchall()]


def _available_units(
    cursor: Cursor,
    task_run_id: int,
    excluded: tuple[int, ...],
    after: tuple[int, int] | None,
    limit: int,
) -> list[Unit]:
    params: list[Any] = [task_run_id, UnitStatus.AVAILABLE]
    if after is not None:
        params += [after[0], after[1]]
    params += [*excluded, limit]
    cursor.execute(available_units_sql(after is not None, len(excluded)), params)
    return [_unit(row) for row in cursor.fetchall()]


def available_units_sql(paged: bool, excluded: int) -> str:
    """One page of available units: (run, status[, after index pair], excluded ids..., limit).

    Keyset paging on the units' own (assignment_index, unit_index), which the
    units_available_in_order index holds in order after the run and status: a page
    costs the same however many units are available (no sort of them all).
    """
    sql = _UNIT_COLUMNS + " WHERE u.task_run_id = ? AND u.status = ?"
    if paged:
        sql += " AND (u.assignment_index, u.unit_index) > (?, ?)"
    if excluded:
        sql += f" AND u.assignment_id NOT IN ({', '.join('?' * excluded)})"
    return sql + " ORDER BY u.assignment_index, u.unit_index LIMIT ?"


_WORKER_COLUMNS = "SELECT id, provider_type, worker_name, created_at FROM workers"


def _find_or_create_worker(
    cursor: Cursor, provider_type: str, worker_name: str, now: float
) -> Worker:
    cursor.execute(
        _WORKER_COLUMNS + " WHERE provider_type = ? AND worker_name = ?",
        (provider_type, worker_name),
    )
    row = cursor.fetchone()
    if row is not None:
        return Worker(*row)
    cursor.execute(
        "INSERT INTO workers (provider_type, worker_name, created_at) VALUES (?, ?, ?)",
        (provider_type, worker_name, now),
    )
    return Worker(_inserted_id(cursor), provider_type, worker_name, now)


def _get_worker(cursor: Cursor, worker_id: int) -> Worker | None:
    cursor.execute(_WORKER_COLUMNS + " WHERE id = ?", (worker_id,))
    row = cursor.fetchone()
    return None if row is None else Worker(*row)


def _list_workers(cursor: Cursor) -> list[Worker]:
    cursor.execute(_WORKER_COLUMNS + " ORDER BY id")
    return [Worker(*row) for row in cursor.fetchall()]


def _grant_qualification(cursor: Cursor, worker_id: int, name: str, value: str, now: float) -> None:
    cursor.execute("SELECT id FROM qualifications WHERE name = ?", (name,))
    row = cursor.fetchone()
    if row is None:
        cursor.execute("INSERT INTO qualifications (name, created_at) VALUES (?, ?)", (name, now))
        qualification_id = _inserted_id(cursor)
    else:
        qualification_id = row[0]
    # Delete then insert: an upsert with no dialect-specific syntax.
    cursor.execute(
        "DELETE FROM granted_qualifications WHERE worker_id = ? AND qualification_id = ?",
        (worker_id, qualification_id),
    )
    cursor.execute(
        "INSERT INTO granted_qualifications (worker_id, qualification_id, value, granted_at)"
        " VALUES (?, ?, ?, ?)",
        (worker_id, qualification_id, value, now),
    )


def _revoke_qualification(cursor: Cursor, worker_id: int, name: str) -> bool:
    cursor.execute(
        "DELETE FROM granted_qualifications WHERE worker_id = ? AND qualification_id IN"
        " (SELECT id FROM qualifications WHERE name = ?)",
        (worker_id, name),
    )
    return cursor.rowcount > 0


def _get_qualifications(cursor: Cursor, worker_id: int) -> dict[str, GrantedQualification]:
    cursor.execute(
        "SELECT q.name, g.value, g.granted_at FROM granted_qualifications g"
        " JOIN qualifications q ON q.id = g.qualification_id WHERE g.worker_id = ?",
        (worker_id,),
    )
    return {
        name: GrantedQualification(name, json.loads(value), granted_at)
        for name, value, granted_at in cursor.fetchall()
    }


_AGENT_FIELDS = (
    "agent_id, kind, task_run_id, worker_id, unit_id, agent_registration_id, status,"
    " created_at, updated_at"
)
_AGENT_COLUMNS = f"SELECT {_AGENT_FIELDS} FROM agents"


def _insert_agent(
    cursor: Cursor,
    agent_id: str,
    kind: str,
    task_run_id: int,
    worker_id: int,
    unit_id: int | None,
    agent_registration_id: str | None,
    status: str,
    now: float,
) -> StoredAgent:
    cursor.execute(
        "INSERT INTO agents (agent_id, kind, task_run_id, worker_id, unit_id,"
        " agent_registration_id, status, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (agent_id, kind, task_run_id, worker_id, unit_id, agent_registration_id, status, now, now),
    )
    _record_status(cursor, agent_id, status, now)
    return StoredAgent(
        agent_id, kind, task_run_id, worker_id, unit_id, agent_registration_id, status, now, now
    )


def _record_status(cursor: Cursor, agent_id: str, status: str, now: float) -> None:
    cursor.execute(
        "INSERT INTO agent_status_history (agent_id, status, changed_at) VALUES (?, ?, ?)",
        (agent_id, status, now),
    )


def _reserve_unit(
    cursor: Cursor,
    task_run_id: int,
    worker_id: int,
    agent_id: str,
    candidates: list[int],
    agent_registration_id: str | None,
    status: str,
    init_from_assignment: bool,
    now: float,
) -> Unit | None:
    chosen: int | None = None
    for start in range(0, len(candidates), _IN_CHUNK):
        chunk = candidates[start : start + _IN_CHUNK]
        cursor.execute(
            "SELECT id FROM units WHERE task_run_id = ? AND status = ?"
            f" AND id IN ({_marks(len(chunk))})",
            (task_run_id, UnitStatus.AVAILABLE, *chunk),
        )
        available = {unit_id for (unit_id,) in cursor.fetchall()}
        chosen = next((unit_id for unit_id in chunk if unit_id in available), None)
        if chosen is not None:
            break
    if chosen is None:
        return None
    cursor.execute(
        "UPDATE units SET status = ?, agent_id = ? WHERE id = ? AND status = ?",
        (UnitStatus.RESERVED, agent_id, chosen, UnitStatus.AVAILABLE),
    )
    if cursor.rowcount != 1:
        raise StorageError(f"unit {chosen} changed while being reserved")
    _insert_agent(
        cursor,
        agent_id,
        AgentKind.UNIT,
        task_run_id,
        worker_id,
        chosen,
        agent_registration_id,
        status,
        now,
    )
    if init_from_assignment:  # the stored JSON as it is: nothing decoded or encoded
        cursor.execute(
            "UPDATE agents SET init_task_data = (SELECT a.data FROM units u"
            " JOIN assignments a ON a.id = u.assignment_id WHERE u.id = ?) WHERE agent_id = ?",
            (chosen, agent_id),
        )
    return _get_unit(cursor, chosen)


def _create_onboarding_agent(
    cursor: Cursor,
    task_run_id: int,
    worker_id: int,
    agent_id: str,
    agent_registration_id: str | None,
    status: str,
    now: float,
) -> StoredAgent:
    return _insert_agent(
        cursor,
        agent_id,
        AgentKind.ONBOARDING,
        task_run_id,
        worker_id,
        None,
        agent_registration_id,
        status,
        now,
    )


def _get_agent(cursor: Cursor, agent_id: str) -> StoredAgent | None:
    cursor.execute(_AGENT_COLUMNS + " WHERE agent_id = ?", (agent_id,))
    row = cursor.fetchone()
    return None if row is None else StoredAgent(*row)


def _find_agent_by_registration_id(
    cursor: Cursor, agent_registration_id: str
) -> StoredAgent | None:
    cursor.execute(
        _AGENT_COLUMNS + " WHERE agent_registration_id = ? ORDER BY seq DESC LIMIT 1",
        (agent_registration_id,),
    )
    row = cursor.fetchone()
    return None if row is None else StoredAgent(*row)


def _list_agents(
    cursor: Cursor, task_run_id: int | None, worker_id: int | None
) -> list[StoredAgent]:
    conditions: list[str] = []
    params: list[Any] = []
    if task_run_id is not None:
        conditions.append("task_run_id = ?")
        params.append(task_run_id)
    if worker_id is not None:
        conditions.append("worker_id = ?")
        params.append(worker_id)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    cursor.execute(_AGENT_COLUMNS + where + " ORDER BY seq", params)
    return [StoredAgent(*row) for row in cursor.fetchall()]


def _set_agent_status(
    cursor: Cursor, agent_id: str, status: str, unit_status: str | None, now: float
) -> bool:
    cursor.execute("SELECT status, unit_id FROM agents WHERE agent_id = ?", (agent_id,))
    row = cursor.fetchone()
    if row is None:
        raise NoSuchAgent(f"no agent {agent_id!r}")
    old_status, unit_id = row
    changed: bool = old_status != status
    if changed:
        cursor.execute(
            "UPDATE agents SET status = ?, updated_at = ? WHERE agent_id = ?",
            (status, now, agent_id),
        )
        _record_status(cursor, agent_id, status, now)
    if unit_status is not None and unit_id is not None:
        _move_unit(cursor, unit_id, agent_id, unit_status)
    return changed


def _move_unit(cursor: Cursor, unit_id: int, agent_id: str, unit_status: str) -> None:
    """Move a unit this agent still holds; releasing it to the pool forgets the agent."""
    holder = None if unit_status == UnitStatus.AVAILABLE else agent_id
    cursor.execute(
        "UPDATE units SET status = ?, agent_id = ? WHERE id = ? AND agent_id = ?",
        (unit_status, holder, unit_id, agent_id),
    )


def _status_history(cursor: Cursor, agent_id: str) -> list[StatusChange]:
    cursor.execute(
        "SELECT status, changed_at FROM agent_status_history WHERE agent_id = ? ORDER BY id",
        (agent_id,),
    )
    return [StatusChange(*row) for row in cursor.fetchall()]


_ACTIVE = sorted(Status.ACTIVE)
_COUNTED = sorted(COUNTED_STATUSES)


def _count_active_agents(
    cursor: Cursor, worker_id: int, task_run_id: int | None, kind: str | None
) -> int:
    sql = f"SELECT COUNT(*) FROM agents WHERE worker_id = ? AND status IN ({_marks(len(_ACTIVE))})"
    params: list[Any] = [worker_id, *_ACTIVE]
    if task_run_id is not None:
        sql += " AND task_run_id = ?"
        params.append(task_run_id)
    if kind is not None:
        sql += " AND kind = ?"
        params.append(kind)
    cursor.execute(sql, params)
    count: int = cursor.fetchone()[0]
    return count


def _count_worker_units(cursor: Cursor, task_run_id: int, worker_id: int) -> int:
    cursor.execute(
        "SELECT COUNT(DISTINCT unit_id) FROM agents WHERE task_run_id = ? AND worker_id = ?"
        f" AND kind = ? AND status IN ({_marks(len(_COUNTED))})",
        (task_run_id, worker_id, AgentKind.UNIT, *_COUNTED),
    )
    count: int = cursor.fetchone()[0]
    return count


def _worked_on(cursor: Cursor, task_run_id: int, worker_id: int) -> WorkedOn:
    cursor.execute(
        "SELECT u.id, u.assignment_id FROM agents g JOIN units u ON u.id = g.unit_id"
        " WHERE g.task_run_id = ? AND g.worker_id = ? AND g.kind = ?",
        (task_run_id, worker_id, AgentKind.UNIT),
    )
    rows = cursor.fetchall()
    return WorkedOn(
        assignment_ids=frozenset(assignment_id for _, assignment_id in rows),
        unit_ids=frozenset(unit_id for unit_id, _ in rows),
    )


def _set_agent_init_data(cursor: Cursor, agent_id: str, data: str) -> None:
    cursor.execute("UPDATE agents SET init_task_data = ? WHERE agent_id = ?", (data, agent_id))
    if cursor.rowcount != 1:
        raise NoSuchAgent(f"no agent {agent_id!r}")


def _resumable_agents(cursor: Cursor, task_run_id: int) -> list[ResumableAgent]:
    # One query per kind of row, each narrowed by the same subquery: the cost does not
    # grow with the number of agents, and there is no IN list to chunk.
    def active(columns: str) -> str:
        return (
            f"SELECT {columns} FROM agents"
            f" WHERE task_run_id = ? AND status IN ({_marks(len(_ACTIVE))})"
        )

    params = (task_run_id, *_ACTIVE)
    cursor.execute(active(f"{_AGENT_FIELDS}, init_task_data") + " ORDER BY seq", params)
    rows = cursor.fetchall()
    if not rows:
        return []
    cursor.execute(_WORKER_COLUMNS + f" WHERE id IN ({active('worker_id')})", params)
    workers = {row[0]: Worker(*row) for row in cursor.fetchall()}
    cursor.execute(_UNIT_COLUMNS + f" WHERE u.id IN ({active('unit_id')})", params)
    units = {unit.id: unit for unit in map(_unit, cursor.fetchall())}
    cursor.execute(
        "SELECT agent_id, direction, update_id, data, created_at FROM live_updates"
        f" WHERE agent_id IN ({active('agent_id')}) ORDER BY id",
        params,
    )
    updates: dict[str, list[LiveUpdate]] = {}
    for agent_id, direction, update_id, data, created_at in cursor.fetchall():
        update = LiveUpdate(agent_id, direction, update_id, json.loads(data), created_at)
        updates.setdefault(agent_id, []).append(update)
    resumable = []
    for *fields, init_task_data in rows:
        agent = StoredAgent(*fields)
        resumable.append(
            ResumableAgent(
                agent=agent,
                worker=workers[agent.worker_id],
                unit=None if agent.unit_id is None else units[agent.unit_id],
                init_task_data=None if init_task_data is None else json.loads(init_task_data),
                live_updates=tuple(updates.get(agent.agent_id, ())),
            )
        )
    return resumable


def _recover_after_restart(cursor: Cursor, keep_task_run_id: int | None, now: float) -> list[str]:
    sql = f"SELECT agent_id, unit_id FROM agents WHERE status IN ({_marks(len(_ACTIVE))})"
    params: list[Any] = [*_ACTIVE]
    if keep_task_run_id is not None:
        sql += " AND task_run_id <> ?"
        params.append(keep_task_run_id)
    cursor.execute(sql + " ORDER BY seq", params)
    stranded = cursor.fetchall()
    for agent_id, unit_id in stranded:
        cursor.execute(
            "UPDATE agents SET status = ?, updated_at = ? WHERE agent_id = ?",
            (Status.DISCONNECT, now, agent_id),
        )
        _record_status(cursor, agent_id, Status.DISCONNECT, now)
        if unit_id is not None:
            cursor.execute(
                "UPDATE units SET status = ?, agent_id = NULL"
                " WHERE id = ? AND agent_id = ? AND status = ?",
                (UnitStatus.AVAILABLE, unit_id, agent_id, UnitStatus.RESERVED),
            )
    return [agent_id for agent_id, _ in stranded]


def _store_submission(
    cursor: Cursor,
    agent_id: str,
    kind: str,
    data: str,
    dedupe_key: str | None,
    files: list[SubmissionFile],
    now: float,
) -> bool:
    if dedupe_key is not None:
        cursor.execute("SELECT 1 FROM submissions WHERE dedupe_key = ?", (dedupe_key,))
        if cursor.fetchone() is not None:
            return False
    cursor.execute(
        "INSERT INTO submissions (agent_id, kind, data, dedupe_key, received_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (agent_id, kind, data, dedupe_key, now),
    )
    submission_id = _inserted_id(cursor)
    for file in files:
        cursor.execute(
            "INSERT INTO submission_files"
            " (submission_id, original_name, stored_path, size, mimetype) VALUES (?, ?, ?, ?, ?)",
            (submission_id, file.original_name, file.stored_path, file.size, file.mimetype),
        )
    return True


def _list_submissions(
    cursor: Cursor, agent_id: str | None, task_run_id: int | None, kind: str | None
) -> list[Submission]:
    conditions: list[str] = []
    params: list[Any] = []
    if agent_id is not None:
        conditions.append("s.agent_id = ?")
        params.append(agent_id)
    if task_run_id is not None:
        conditions.append("g.task_run_id = ?")
        params.append(task_run_id)
    if kind is not None:
        conditions.append("s.kind = ?")
        params.append(kind)
    source = " FROM submissions s JOIN agents g ON g.agent_id = s.agent_id"
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    cursor.execute(
        "SELECT f.submission_id, f.original_name, f.stored_path, f.size, f.mimetype"
        + source
        + " JOIN submission_files f ON f.submission_id = s.id"
        + where
        + " ORDER BY f.id",
        params,
    )
    files: dict[int, list[SubmissionFile]] = {}
    for submission_id, *fields in cursor.fetchall():
        files.setdefault(submission_id, []).append(SubmissionFile(*fields))
    cursor.execute(
        "SELECT s.id, s.agent_id, s.kind, s.data, s.dedupe_key, s.received_at"
        + source
        + where
        + " ORDER BY s.id",
        params,
    )
    return [
        Submission(
            id=row[0],
            agent_id=row[1],
            kind=row[2],
            data=json.loads(row[3]),
            dedupe_key=row[4],
            received_at=row[5],
            files=tuple(files.get(row[0], ())),
        )
        for row in cursor.fetchall()
    ]


def _store_live_update(
    cursor: Cursor, agent_id: str, direction: str, data: str, update_id: str | None, now: float
) -> bool:
    if update_id is not None:
        cursor.execute(
            "SELECT 1 FROM live_updates WHERE agent_id = ? AND direction = ? AND update_id = ?",
            (agent_id, direction, update_id),
        )
        if cursor.fetchone() is not None:
            return False
    cursor.execute(
        "INSERT INTO live_updates (agent_id, direction, update_id, data, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (agent_id, direction, update_id, data, now),
    )
    return True


def _live_updates(cursor: Cursor, agent_id: str, direction: str | None) -> list[LiveUpdate]:
    sql = "SELECT agent_id, direction, update_id, data, created_at FROM live_updates"
    sql += " WHERE agent_id = ?"
    params: list[Any] = [agent_id]
    if direction is not None:
        sql += " AND direction = ?"
        params.append(direction)
    cursor.execute(sql + " ORDER BY id", params)
    return [
        LiveUpdate(agent_id, direction, update_id, json.loads(data), created_at)
        for agent_id, direction, update_id, data, created_at in cursor.fetchall()
    ]
