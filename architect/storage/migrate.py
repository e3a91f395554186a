"""`architect migrate`: copy everything an SQLite file holds into an empty PostgreSQL database.

Both sides are first brought to the current schema by their own engine (the SQLite file
upgraded in place as the daemon would, the PostgreSQL schema created from the shared
schema files), so the tables and columns are the same. Then every table is copied in the
order SQLite created it (a table comes after those it refers to), with its ids as they
were, in one PostgreSQL transaction holding the writers' lock; each id sequence is moved
past the copied ids. A failure leaves the target as empty as it was. Uploaded files are
not moved: they stay in data_dir/files/, which the new config keeps naming.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg import sql
from twisted.internet.threads import deferToThread

from architect.config import StorageConfig
from architect.database_url import DatabaseUrl, read_password_file
from architect.storage.interface import StorageError
from architect.storage.postgresql import open_postgresql_database
from architect.storage.postgresql.engine import CONNECT_TIMEOUT, WRITE_LOCK
from architect.storage.sqlite.database import open_sqlite_database

BATCH = 1000  # rows read from SQLite and sent to PostgreSQL at a time


@attrs.frozen
class Copied:
    rows: dict[str, int]  # table -> rows copied, in copy order


async def migrate(
    source: StorageConfig,
    target: DatabaseUrl,
    password_file: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Copied:
    """Copy the SQLite database of `source` into the empty PostgreSQL database `target`."""
    path = source.data_dir / source.database
    if not path.is_file():
        raise StorageError(f"no SQLite database at {path}")
    await (await open_sqlite_database(source.data_dir, source.database)).close()
    database = await open_postgresql_database(target, source.data_dir, password_file=password_file)
    await database.close()
    password = None if password_file is None else read_password_file(password_file)
    copied: Copied = await deferToThread(_copy, path, target, password, progress)
    return copied


def _copy(
    path: Path,
    target: DatabaseUrl,
    password: str | None,
    progress: Callable[[str, int], None] | None,
) -> Copied:
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, **target.connect_args(password)}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as lite:
        lite.execute("BEGIN")  # one snapshot of the file, whatever a daemon writes meanwhile
        tables = [
            name
            for (name,) in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' AND name <> 'schema_version' ORDER BY rowid"
            )
        ]
        try:
            connection = psycopg.connect(**args)
        except psycopg.Error as e:
            raise StorageError(f"cannot connect to {target}: {_first_line(e)}") from None
        with connection:
            cursor = connection.cursor()
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            for table in tables:
                cursor.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))
                if cursor.fetchone() is not None:
                    raise StorageError(
                        f"{target} already holds data (table {table}): migrate into an empty"
                        " database"
                    )
            rows: dict[str, int] = {}
            for table in tables:
                rows[table] = _copy_table(lite, cursor, table)
                if progress is not None:
                    progress(table, rows[table])
            _move_sequences(cursor)
        return Copied(rows)


def _copy_table(lite: sqlite3.Connection, cursor: Any, table: str) -> int:
    columns = [row[1] for row in lite.execute(f'PRAGMA table_info("{table}")')]
    select = "SELECT " + ", ".join(f'"{c}"' for c in columns) + f' FROM "{table}"'
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    copied = 0
    source = lite.execute(select)
    while batch := source.fetchmany(BATCH):
        cursor.executemany(insert, batch)
        copied += len(batch)
    return copied


def _move_sequences(cursor: Any) -> None:
    """Each id sequence past the largest id copied, so new rows get new ids."""
    cursor.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%%'"
    )
    for table, column in cursor.fetchall():
        cursor.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(MAX({}), 0) + 1, false)"
                " FROM {}"
            ).format(sql.Identifier(column), sql.Identifier(table)),
            (table, column),
        )


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
