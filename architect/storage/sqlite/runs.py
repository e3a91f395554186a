"""Task runs, assignments and units on SQLite: the query functions and the RunsAndUnits part."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred

from architect.lifecycle import UnitStatus
from architect.storage.interface import CandidateUnit, TaskRun, Unit
from architect.storage.sqlite.engine import EnginePart
from architect.storage.sqlite.sql import (
    Cursor,
    check_known,
    count_by,
    inserted_id,
    json_text,
    marks,
    where,
)


class SQLiteRunsAndUnits(EnginePart):
    """RunsAndUnits on the engine's file."""

    def find_or_create_task_run(self, name: str, config: Mapping[str, Any]) -> Deferred[TaskRun]:
        encoded = json_text(dict(config))
        return self._engine.run(True, find_or_create_task_run, name, encoded, self._engine.now())

    def get_task_run(self, name: str) -> Deferred[TaskRun | None]:
        return self._engine.run(False, get_task_run, name)

    def list_task_runs(self) -> Deferred[list[TaskRun]]:
        return self._engine.run(False, list_task_runs)

    def add_assignments(
        self, task_run_id: int, assignments: Sequence[Any], units_per_assignment: int = 1
    ) -> Deferred[int]:
        return self._store_assignments(
            add_assignments, task_run_id, assignments, units_per_assignment
        )

    def append_assignments(
        self, task_run_id: int, assignments: Sequence[Any], units_per_assignment: int = 1
    ) -> Deferred[int]:
        return self._store_assignments(
            append_assignments, task_run_id, assignments, units_per_assignment
        )

    def _store_assignments(
        self,
        query: Callable[[Cursor, int, list[str], int, float], int],
        task_run_id: int,
        assignments: Sequence[Any],
        units_per_assignment: int,
    ) -> Deferred[int]:
        if units_per_assignment < 1:
            raise ValueError(f"units_per_assignment must be at least 1, not {units_per_assignment}")
        encoded = [json_text(data) for data in assignments]
        now = self._engine.now()
        return self._engine.run(True, query, task_run_id, encoded, units_per_assignment, now)

    def get_unit(self, unit_id: int) -> Deferred[Unit | None]:
        return self._engine.run(False, get_unit, unit_id)

    def list_units(self, task_run_id: int, status: str | None = None) -> Deferred[list[Unit]]:
        if status is not None:
            check_known(status, UnitStatus.ALL, "unit status")
        return self._engine.run(False, list_units, task_run_id, status)

    def available_units(
        self,
        task_run_id: int,
        excluded_assignment_ids: Collection[int] = (),
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> Deferred[list[Unit]]:
        excluded = tuple(excluded_assignment_ids)
        return self._engine.run(False, available_units, task_run_id, excluded, after, limit)

    def available_candidates(
        self,
        task_run_id: int,
        excluded_assignment_ids: Collection[int] = (),
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> Deferred[list[CandidateUnit]]:
        excluded = tuple(excluded_assignment_ids)
        return self._engine.run(False, available_candidates, task_run_id, excluded, after, limit)

    def count_units_by_status(self, task_run_id: int) -> Deferred[dict[str, int]]:
        return self._engine.run(
            False,
            count_by,
            "SELECT status, COUNT(*) FROM units WHERE task_run_id = ? GROUP BY status",
            (task_run_id,),
        )


# --- task runs ---

_TASK_RUN_COLUMNS = "SELECT id, name, config, created_at FROM task_runs"


def _task_run(row: Sequence[Any]) -> TaskRun:
    return TaskRun(row[0], row[1], json.loads(row[2]), row[3])


def get_task_run(cursor: Cursor, name: str) -> TaskRun | None:
    cursor.execute(_TASK_RUN_COLUMNS + " WHERE name = ?", (name,))
    row = cursor.fetchone()
    return None if row is None else _task_run(row)


def list_task_runs(cursor: Cursor) -> list[TaskRun]:
    cursor.execute(_TASK_RUN_COLUMNS + " ORDER BY id")
    return [_task_run(row) for row in cursor.fetchall()]


def find_or_create_task_run(cursor: Cursor, name: str, config: str, now: float) -> TaskRun:
    found = get_task_run(cursor, name)
    if found is not None:
        return found
    cursor.execute(
        "INSERT INTO task_runs (name, config, created_at) VALUES (?, ?, ?)", (name, config, now)
    )
    return TaskRun(inserted_id(cursor), name, json.loads(config), now)


# --- assignments and units ---


def add_assignments(
    cursor: Cursor, task_run_id: int, encoded: list[str], units_per_assignment: int, now: float
) -> int:
    cursor.execute("SELECT assignment_index FROM assignments WHERE task_run_id = ?", (task_run_id,))
    existing = {index for (index,) in cursor.fetchall()}
    added = 0
    for index, data in enumerate(encoded):
        if index in existing:
            continue
        _insert_assignment(cursor, task_run_id, index, data, units_per_assignment, now)
        added += 1
    return added


def append_assignments(
    cursor: Cursor, task_run_id: int, encoded: list[str], units_per_assignment: int, now: float
) -> int:
    cursor.execute(
        "SELECT MAX(assignment_index) FROM assignments WHERE task_run_id = ?", (task_run_id,)
    )
    (last,) = cursor.fetchone()
    first = 0 if last is None else last + 1
    for offset, data in enumerate(encoded):
        _insert_assignment(cursor, task_run_id, first + offset, data, units_per_assignment, now)
    return first


def _insert_assignment(
    cursor: Cursor, task_run_id: int, index: int, data: str, units_per_assignment: int, now: float
) -> None:
    cursor.execute(
        "INSERT INTO assignments (task_run_id, assignment_index, data, created_at)"
        " VALUES (?, ?, ?, ?)",
        (task_run_id, index, data, now),
    )
    assignment_id = inserted_id(cursor)
    for unit_index in range(units_per_assignment):
        cursor.execute(
            "INSERT INTO units (task_run_id, assignment_id, assignment_index, unit_index,"
            " status, agent_id, created_at) VALUES (?, ?, ?, ?, ?, NULL, ?)",
            (task_run_id, assignment_id, index, unit_index, UnitStatus.AVAILABLE, now),
        )


UNIT_COLUMNS = (
    "SELECT u.id, u.task_run_id, u.assignment_id, a.assignment_index, u.unit_index, a.data,"
    " u.status, u.agent_id FROM units u JOIN assignments a ON a.id = u.assignment_id"
)
UNIT_DATA = 5  # where a UNIT_COLUMNS row holds the assignment's data (JSON text)


def unit_from_row(row: Sequence[Any]) -> Unit:
    """The Unit of a row read with UNIT_COLUMNS."""
    return Unit(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6], row[7])


def get_unit(cursor: Cursor, unit_id: int) -> Unit | None:
    cursor.execute(UNIT_COLUMNS + " WHERE u.id = ?", (unit_id,))
    row = cursor.fetchone()
    return None if row is None else unit_from_row(row)


def list_units(cursor: Cursor, task_run_id: int, status: str | None) -> list[Unit]:
    clause, params = where({"u.task_run_id = ?": task_run_id, "u.status = ?": status})
    cursor.execute(UNIT_COLUMNS + clause + " ORDER BY a.assignment_index, u.unit_index", params)
    return [unit_from_row(row) for row in cursor.fetchall()]


def available_units(
    cursor: Cursor,
    task_run_id: int,
    excluded: tuple[int, ...],
    after: tuple[int, int] | None,
    limit: int,
) -> list[Unit]:
    cursor.execute(*_available_units_query(task_run_id, excluded, after, limit))
    return [unit_from_row(row) for row in cursor.fetchall()]


def available_candidates(
    cursor: Cursor,
    task_run_id: int,
    excluded: tuple[int, ...],
    after: tuple[int, int] | None,
    limit: int,
) -> list[CandidateUnit]:
    """The page available_units reads (the same query), nothing decoded."""
    cursor.execute(*_available_units_query(task_run_id, excluded, after, limit))
    return [CandidateUnit(row[0], row[2], row[3], row[4], row[5]) for row in cursor.fetchall()]


def _available_units_query(
    task_run_id: int, excluded: tuple[int, ...], after: tuple[int, int] | None, limit: int
) -> tuple[str, list[Any]]:
    """One page of available units, past `after`, leaving out the excluded assignments.

    Keyset paging on the units' own (assignment_index, unit_index), which the
    units_available_in_order index holds in order after the run and status: a page
    costs the same however many units are available (no sort of them all).
    """
    clause, params = where(
        {
            "u.task_run_id = ?": task_run_id,
            "u.status = ?": UnitStatus.AVAILABLE,
            "(u.assignment_index, u.unit_index) > (?, ?)": after,
            f"u.assignment_id NOT IN ({marks(len(excluded))})": excluded or None,
        }
    )
    order = " ORDER BY u.assignment_index, u.unit_index LIMIT ?"
    return UNIT_COLUMNS + clause + order, [*params, limit]


def available_units_sql(paged: bool, excluded: int) -> str:
    """The SQL of a page of available units, for its parameters in this order:
    run, status[, the after index pair], the excluded ids..., limit."""
    sql, _ = _available_units_query(0, tuple(range(excluded)), (0, 0) if paged else None, 0)
    return sql
