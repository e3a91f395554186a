"""PostgreSQLDatabase: the Database interface on a PostgreSQL database, of the same five parts.

The parts are SQLite's own (architect/storage/sqlite/: runs, workers, agents,
submissions, the run record): the same query functions, run on the PostgreSQL engine, whose cursor
turns their SQL into PostgreSQL's (dialect.py). So each rule is written once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from architect.database_url import DatabaseUrl, read_password_file
from architect.storage.interface import StorageError
from architect.storage.postgresql.engine import PostgreSQLEngine, open_engine
from architect.storage.schema_versions import SCHEMA_DIR, SCHEMA_VERSION
from architect.storage.sqlite.agents import SQLiteAgentRecords
from architect.storage.sqlite.run_record import SQLiteRunRecord
from architect.storage.sqlite.runs import SQLiteRunsAndUnits
from architect.storage.sqlite.submissions import SQLiteSubmissionsAndLiveUpdates
from architect.storage.sqlite.work import SQLiteWorkRequests
from architect.storage.sqlite.workers import SQLiteWorkersAndQualifications


class PostgreSQLDatabase(
    SQLiteRunsAndUnits,
    SQLiteWorkersAndQualifications,
    SQLiteAgentRecords,
    SQLiteWorkRequests,
    SQLiteSubmissionsAndLiveUpdates,
    SQLiteRunRecord,
):
    """Database on PostgreSQL. Build it with open_postgresql_database or open_database."""

    _engine: PostgreSQLEngine

    @property
    def data_dir(self) -> Path:
        return self._engine.data_dir

    def close(self) -> Deferred[None]:
        """Refuse new work, let running work finish, then close the connection."""
        return self._engine.close()


def open_postgresql_database(
    url: DatabaseUrl,
    data_dir: Path,
    *,
    password_file: Path | None = None,
    reactor: Any = None,
    clock: IReactorTime | None = None,
    schema_dir: Path = SCHEMA_DIR,
    target_version: int = SCHEMA_VERSION,
) -> Deferred[PostgreSQLDatabase]:
    """Connect, and create or upgrade the schema to target_version (in one transaction).

    data_dir keeps the submitted files (files/). The password is password_file's
    first line, or what libpq finds itself (PGPASSWORD, ~/.pgpass). Fails with
    StorageError if the server cannot be reached or refuses, SchemaError if the
    schema cannot be brought to target_version.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    password = None
    if password_file is not None:
        try:
            password = read_password_file(password_file)
        except (OSError, ValueError) as e:
            return fail(StorageError(f"cannot read the password file {password_file}: {e}"))
    d = open_engine(
        url, password, Path(data_dir), reactor, clock or reactor, schema_dir, target_version
    )
    return d.addCallback(PostgreSQLDatabase)
