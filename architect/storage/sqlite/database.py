"""SQLiteDatabase: the Database interface on one SQLite file, made of the five parts
(AgentRecords in two classes: its one-transaction registration is work.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from architect.config import StorageConfig

if TYPE_CHECKING:
    from architect.storage.postgresql import PostgreSQLDatabase
from architect.storage.interface import Database
from architect.storage.schema_versions import SCHEMA_DIR, SCHEMA_VERSION
from architect.storage.sqlite.agents import SQLiteAgentRecords
from architect.storage.sqlite.engine import DEFAULT_DATABASE, open_engine
from architect.storage.sqlite.run_record import SQLiteRunRecord
from architect.storage.sqlite.runs import SQLiteRunsAndUnits
from architect.storage.sqlite.submissions import SQLiteSubmissionsAndLiveUpdates
from architect.storage.sqlite.work import SQLiteWorkRequests
from architect.storage.sqlite.workers import SQLiteWorkersAndQualifications


class SQLiteDatabase(
    SQLiteRunsAndUnits,
    SQLiteWorkersAndQualifications,
    SQLiteAgentRecords,
    SQLiteWorkRequests,
    SQLiteSubmissionsAndLiveUpdates,
    SQLiteRunRecord,
):
    """Database on an SQLite file. Build it with open_sqlite_database or open_database."""

    @property
    def data_dir(self) -> Path:
        return self._engine.data_dir

    def close(self) -> Deferred[None]:
        """Refuse new work, let running work finish, then close the connection."""
        return self._engine.close()


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

    An existing file is first copied to <database>.v<N>.bak beside it (N its old
    version) when its schema is upgraded. Fails with SchemaError if the file's
    schema cannot be brought there, and with StorageError if the folder cannot be
    made or the copy cannot be written.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    d = open_engine(Path(data_dir), database, reactor, clock or reactor, schema_dir, target_version)
    return d.addCallback(SQLiteDatabase)


def open_database(
    config: StorageConfig, reactor: Any = None, clock: IReactorTime | None = None
) -> Deferred[Database]:
    """The database the [storage] section names, created or upgraded as needed:
    PostgreSQL when it has a url, else the SQLite file."""
    if config.url is not None:
        from architect.storage.postgresql import open_postgresql_database

        pg = open_postgresql_database(
            config.url,
            config.data_dir,
            password_file=config.password_file,
            reactor=reactor,
            clock=clock,
        )
        return pg.addCallback(_as_database)
    d = open_sqlite_database(config.data_dir, config.database, reactor=reactor, clock=clock)
    return d.addCallback(_as_database)


def _as_database(database: SQLiteDatabase | PostgreSQLDatabase) -> Database:
    # Also makes mypy check that both provide the whole Database interface.
    return database
