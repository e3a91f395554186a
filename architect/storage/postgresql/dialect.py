"""Where PostgreSQL's SQL differs from the SQLite SQL the query modules and schema files hold.

Everything else is shared: the schema files (vN.sql, upgrade_vX_to_vY.sql) and the
query functions of architect/storage/sqlite/ are written once, in SQLite's words, and
turned into PostgreSQL's here as they are run:

- placeholders: "?" becomes "%s" (psycopg's), and a literal "%" becomes "%%";
- "INSERT OR IGNORE INTO ..." becomes "INSERT INTO ... ON CONFLICT DO NOTHING";
- in the schema, "INTEGER PRIMARY KEY" (SQLite's row id) becomes "BIGSERIAL PRIMARY KEY",
  the other INTEGERs BIGINT (SQLite's integers are 64-bit), and REAL DOUBLE PRECISION
  (SQLite's REAL is 8 bytes, PostgreSQL's only 4: times would lose their fractions);
- the id of the row just inserted (cursor.lastrowid in sqlite3) is read from the
  inserted table's id sequence (TranslatingCursor.lastrowid).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from architect.storage.interface import StorageError
from architect.storage.sqlite.sql import NulRefusingCursor

_COMMENT = re.compile(r"--[^\n]*")
_ROW_ID = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?\b", re.IGNORECASE)
_INTEGER = re.compile(r"\bINTEGER\b", re.IGNORECASE)
_REAL = re.compile(r"\bREAL\b", re.IGNORECASE)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def schema_script(sql: str) -> str:
    """A schema file (or upgrade step) in PostgreSQL's words, run as one script."""
    sql = _COMMENT.sub("", sql)  # the files' comments talk about these very words
    sql = _ROW_ID.sub("BIGSERIAL PRIMARY KEY", sql)
    sql = _INTEGER.sub("BIGINT", sql)
    return _REAL.sub("DOUBLE PRECISION", sql)


@lru_cache(maxsize=2048)
def query(sql: str) -> str:
    """A query with "?" placeholders in PostgreSQL's words (psycopg's "%s")."""
    ignore = _INSERT_OR_IGNORE.match(sql)
    if ignore:
        sql = "INSERT INTO" + sql[ignore.end() :] + " ON CONFLICT DO NOTHING"
    out: list[str] = []
    quoted = False  # inside '...': a "?" there is text, not a placeholder
    for char in sql:
        if char == "'":
            quoted = not quoted
            out.append(char)
        elif char == "%":
            out.append("%%")
        elif char == "?" and not quoted:
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def inserted_table(sql: str) -> str | None:
    match = _INSERT_INTO.match(sql)
    return None if match is None else match.group(1)


class TranslatingCursor(NulRefusingCursor):
    """A psycopg cursor that takes the query modules' SQLite SQL (the sql.Cursor protocol),
    refusing text that holds a NUL as the SQLite engine's cursor does."""

    def __init__(self, cursor: Any) -> None:
        super().__init__(cursor)
        self._last_insert: str | None = None

    @property
    def lastrowid(self) -> int | None:
        """The id the last INSERT's table gave its new row (its id column's sequence)."""
        if self._last_insert is None:
            return None
        self._cursor.execute(
            "SELECT currval(pg_get_serial_sequence(%s, 'id'))", (self._last_insert,)
        )
        row = self._cursor.fetchone()
        if row is None or row[0] is None:
            raise StorageError(f"the table {self._last_insert} gave no id for its new row")
        value: int = row[0]
        return value

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self._last_insert = inserted_table(sql)
        # Always with parameters, even none: psycopg then reads "%%" as "%" everywhere.
        return super().execute(query(sql), tuple(params))
