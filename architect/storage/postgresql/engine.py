"""The PostgreSQL connection and its thread: opening, schema upgrades, grouped transactions.

The SQLite engine's structure, reused as it is (a subclass): one psycopg connection on
one thread (adbapi, cp_min = cp_max = 1), interactions committed in groups, one commit
for all, every Deferred fired after that commit (run_in_one_transaction).

What PostgreSQL needs besides: other connections (another daemon, the `architect`
command) write at the same time, and PostgreSQL has no BEGIN IMMEDIATE. A group with a
write first takes a transaction-level advisory lock (WRITE_LOCK), held until its
commit: writers run one after another, as on SQLite, so a reservation's read and its
update cannot be split by another writer, whichever connection it comes from. Write
groups run in READ COMMITTED (each statement sees every commit made before it, and no
other writer runs meanwhile); read-only groups in REPEATABLE READ READ ONLY, so that a
group's reads agree with each other (resumable_agents) without waiting for writers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.database_url import DatabaseUrl
from architect.private import private_folder
from architect.storage.interface import SchemaError, StorageError
from architect.storage.postgresql.dialect import TranslatingCursor, schema_script
from architect.storage.schema_versions import schema_plan, version_statements
from architect.storage.sqlite.engine import (
    FILES_DIR,
    Savepoints,
    SQLiteEngine,
    _Work,
    run_in_one_transaction,
)

# Any fixed 64-bit key: the one advisory lock all of Architect's writers take, per database.
WRITE_LOCK = 0x417263686974  # "Archit"
CONNECT_TIMEOUT = 10  # seconds, unless the url's ?connect_timeout= says otherwise

log = Logger()


def open_engine(
    url: DatabaseUrl,
    password: str | None,
    data_dir: Path,
    reactor: Any,
    clock: IReactorTime,
    schema_dir: Path,
    target_version: int,
) -> Deferred[PostgreSQLEngine]:
    """The engine on the url's database, its schema made or brought to target_version."""
    try:
        private_folder(data_dir)
        private_folder(data_dir / FILES_DIR)
    except OSError as e:
        return fail(StorageError(f"cannot create the data folder {data_dir}: {e.strerror}"))
    args = url.connect_args(password)
    args.setdefault("connect_timeout", CONNECT_TIMEOUT)
    pool = adbapi.ConnectionPool(
        "psycopg",
        autocommit=True,  # we issue BEGIN ourselves; adbapi commits or rolls back
        cp_min=1,
        cp_max=1,
        cp_reconnect=True,
        cp_reactor=reactor,
        **args,
    )
    d: Deferred[int | None] = pool.runWithConnection(_bring_schema_to, schema_dir, target_version)

    def opened(upgraded_from: int | None) -> PostgreSQLEngine:
        if upgraded_from is not None:
            log.info(
                "Upgraded the database {url} from schema version {old} to {version}",
                url=str(url),
                old=upgraded_from,
                version=target_version,
            )
        return PostgreSQLEngine(pool, data_dir, reactor, clock)

    def failed(failure: Failure) -> Any:
        pool.close()
        if failure.check(psycopg.Error) and not failure.check(StorageError):
            first_line = str(failure.value).strip().splitlines()[0:1] or ["unknown error"]
            return fail(StorageError(f"cannot open the database {url}: {first_line[0]}"))
        return failure

    return d.addCallbacks(opened, failed)


def _bring_schema_to(connection: Any, schema_dir: Path, target: int) -> int | None:
    """Create or upgrade the schema in one transaction (PostgreSQL's DDL is transactional:
    a failed step leaves the database as it was). The version upgraded from, or None."""
    cursor = connection.cursor()
    cursor.execute("BEGIN")
    try:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        cursor.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        tables = {name for (name,) in cursor.fetchall()}
        plan = schema_plan(tables, cursor, target, schema_dir)
        for step in plan.steps:
            try:
                cursor.execute(schema_script(step.sql))
            except psycopg.Error as e:
                raise SchemaError(f"{step.path} failed on PostgreSQL: {e}") from e
            for statement in version_statements(step.version):
                cursor.execute(statement)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return plan.current if plan.steps else None


class PostgreSQLEngine(SQLiteEngine):
    """The open database: the SQLite engine's grouping, with PostgreSQL's transactions."""

    @staticmethod
    def run_group(connection: Any, group: list[_Work]) -> list[Any]:
        raw = connection.cursor()
        write = any(work.write for work in group)

        def begin() -> None:
            if write:
                raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            else:
                raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

        cursor = TranslatingCursor(raw)
        return run_in_one_transaction(connection, raw, cursor, group, begin, SAVEPOINTS)


SAVEPOINTS = Savepoints("SAVEPOINT work", "ROLLBACK TO SAVEPOINT work", "RELEASE SAVEPOINT work")
