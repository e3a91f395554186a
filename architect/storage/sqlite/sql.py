"""What the query modules share: the cursor they are given and a few SQL helpers.

The query functions run in the database thread, one transaction each: they take
a cursor and plain values (JSON already encoded) and return records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from architect.nul import NUL
from architect.storage.interface import StorageError

# Most "?" in one IN (...) list; SQLite's own limit is far higher.
IN_CHUNK = 500


class Cursor(Protocol):
    """What the query functions use of a DB-API cursor (adbapi's Transaction)."""

    rowcount: int
    lastrowid: int | None

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


def marks(count: int) -> str:
    """The placeholders of an IN list of count values: "?, ?, ?"."""
    return ", ".join("?" * count)


def where(conditions: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """(" WHERE c1 AND c2 ...", their parameters) of the conditions whose value is not None.

    Each key is a condition with its "?" ("u.status = ?", "task_run_id <> ?"); its value is
    its parameter, or a tuple or list of them for a condition with several "?" (an IN
    list, a row comparison). A value of None leaves the condition out: that is how
    optional filters are written. No condition left: "" and no parameters.
    """
    chosen: list[str] = []
    params: list[Any] = []
    for condition, value in conditions.items():
        if value is None:
            continue
        chosen.append(condition)
        values = list(value) if isinstance(value, tuple | list) else [value]
        wanted = condition.count("?")
        if len(values) != wanted:
            raise ValueError(f"{condition!r} takes {wanted} values, not {len(values)}")
        params += values
    return (f" WHERE {' AND '.join(chosen)}" if chosen else ""), params


class NulRefusingCursor:
    """A cursor that refuses text parameters holding a NUL, on every engine alike
    (PostgreSQL's text cannot hold one: architect/nul.py); the rest is the cursor's."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        count: int = self._cursor.rowcount
        return count

    @property
    def lastrowid(self) -> int | None:
        row_id: int | None = self._cursor.lastrowid
        return row_id

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        refuse_nul(params)
        return self._cursor.execute(sql, params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        rows: list[Any] = self._cursor.fetchall()
        return rows


def refuse_nul(params: Sequence[Any]) -> None:
    for value in params:
        if isinstance(value, str) and NUL in value:
            raise StorageError("text holding a NUL character cannot be stored")


def inserted_id(cursor: Cursor) -> int:
    if cursor.lastrowid is None:
        raise StorageError("the database gave no id for a new row")
    return cursor.lastrowid


def exists(cursor: Cursor, sql: str, params: Sequence[Any]) -> bool:
    """Whether the query finds a row."""
    cursor.execute(sql, params)
    return cursor.fetchone() is not None


def count_by(cursor: Cursor, sql: str, params: Sequence[Any]) -> dict[str, int]:
    """{key: count} from a "SELECT key, COUNT(*) ... GROUP BY key"."""
    cursor.execute(sql, params)
    return {key: count for key, count in cursor.fetchall()}


# --- checks made in the reactor thread, before any work is queued ---


def json_text(value: Any) -> str:
    """JSON text of value; raises TypeError/ValueError at once for what JSON cannot hold."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def check_known(value: str, allowed: frozenset[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{value!r} is not a known {what} (known: {', '.join(sorted(allowed))})")
