"""Agents on SQLite: reservations, statuses and their history, counts, resume and recovery."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from architect.lifecycle import ACTIVE, COUNTED, FINAL, AgentKind, UnitStatus, unit_status_if_lost
from architect.protocol import Status
from architect.storage.interface import (
    LiveUpdate,
    NoSuchAgent,
    ResumableAgent,
    StatusChange,
    StorageError,
    StoredAgent,
    Unit,
    WorkedOn,
    Worker,
)
from architect.storage.sqlite.engine import EnginePart
from architect.storage.sqlite.runs import UNIT_COLUMNS, UNIT_DATA, unit_from_row
from architect.storage.sqlite.sql import (
    IN_CHUNK,
    Cursor,
    check_known,
    count_by,
    json_text,
    marks,
    where,
)
from architect.storage.sqlite.statuses import change_status, record_status, set_agent_status
from architect.storage.sqlite.submissions import LIVE_UPDATE_COLUMNS, live_update_from_row
from architect.storage.sqlite.workers import WORKER_COLUMNS


class SQLiteAgentRecords(EnginePart):
    """AgentRecords on the engine's file."""

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
        check_known(status, Status.ALL, "agent status")
        return self._engine.run(
            True,
            reserve_unit,
            task_run_id,
            worker_id,
            agent_id,
            list(candidate_unit_ids),
            agent_registration_id,
            status,
            init_from_assignment,
            self._engine.now(),
        )

    def create_onboarding_agent(
        self,
        task_run_id: int,
        worker_id: int,
        agent_id: str,
        agent_registration_id: str | None = None,
        status: str = Status.NONE,
    ) -> Deferred[StoredAgent]:
        check_known(status, Status.ALL, "agent status")
        return self._engine.run(
            True,
            insert_agent,
            agent_id,
            AgentKind.ONBOARDING,
            task_run_id,
            worker_id,
            None,
            agent_registration_id,
            status,
            self._engine.now(),
        )

    def get_agent(self, agent_id: str) -> Deferred[StoredAgent | None]:
        return self._engine.run(False, get_agent, agent_id)

    def find_agent_by_registration_id(
        self, agent_registration_id: str
    ) -> Deferred[StoredAgent | None]:
        return self._engine.run(False, find_agent_by_registration_id, agent_registration_id)

    def list_agents(
        self, task_run_id: int | None = None, worker_id: int | None = None
    ) -> Deferred[list[StoredAgent]]:
        return self._engine.run(False, list_agents, task_run_id, worker_id)

    def recently_finished_agents(
        self, task_run_id: int, since: float, limit: int
    ) -> Deferred[dict[str, str]]:
        return self._engine.run(False, recently_finished_agents, task_run_id, since, limit)

    def set_agent_status(
        self, agent_id: str, status: str, unit_status: str | None = None
    ) -> Deferred[bool]:
        check_known(status, Status.ALL, "agent status")
        if unit_status is not None:
            check_known(unit_status, UnitStatus.ALL, "unit status")
        now = self._engine.now()
        return self._engine.run(True, set_agent_status, agent_id, status, unit_status, now)

    def status_history(self, agent_id: str) -> Deferred[list[StatusChange]]:
        return self._engine.run(False, status_history, agent_id)

    def count_agents_by_status(self, task_run_id: int) -> Deferred[dict[str, int]]:
        return self._engine.run(
            False,
            count_by,
            "SELECT status, COUNT(*) FROM agents WHERE task_run_id = ? GROUP BY status",
            (task_run_id,),
        )

    def count_active_agents(
        self, worker_id: int, task_run_id: int | None = None, kind: str | None = None
    ) -> Deferred[int]:
        if kind is not None:
            check_known(kind, AgentKind.ALL, "agent kind")
        return self._engine.run(False, count_active_agents, worker_id, task_run_id, kind)

    def count_worker_units(self, task_run_id: int, worker_id: int) -> Deferred[int]:
        return self._engine.run(False, count_worker_units, task_run_id, worker_id)

    def worked_on(self, task_run_id: int, worker_id: int) -> Deferred[WorkedOn]:
        return self._engine.run(False, worked_on, task_run_id, worker_id)

    def set_agent_init_data(self, agent_id: str, data: Any) -> Deferred[None]:
        return self._engine.run(True, set_agent_init_data, agent_id, json_text(data))

    def resumable_agents(self, task_run_id: int) -> Deferred[list[ResumableAgent]]:
        return self._engine.run(False, resumable_agents, task_run_id)

    def recover_after_restart(self, keep_task_run_id: int | None = None) -> Deferred[list[str]]:
        now = self._engine.now()
        return self._engine.run(True, recover_after_restart, keep_task_run_id, now)


_AGENT_FIELDS = (
    "agent_id, kind, task_run_id, worker_id, unit_id, agent_registration_id, status,"
    " created_at, updated_at"
)
_AGENT_COLUMNS = f"SELECT {_AGENT_FIELDS} FROM agents"
_ACTIVE = sorted(ACTIVE)
_IS_ACTIVE = f"status IN ({marks(len(_ACTIVE))})"
_COUNTED = sorted(COUNTED)
_INSERT_AGENT = (
    "INSERT INTO agents (agent_id, kind, task_run_id, worker_id, unit_id,"
    " agent_registration_id, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_AGENT_WITH_DATA = (
    "INSERT INTO agents (agent_id, kind, task_run_id, worker_id, unit_id,"
    " agent_registration_id, status, created_at, updated_at, init_task_data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# --- new agents ---


def insert_agent(
    cursor: Cursor,
    agent_id: str,
    kind: str,
    task_run_id: int,
    worker_id: int,
    unit_id: int | None,
    agent_registration_id: str | None,
    status: str,
    now: float,
    init_task_data: str | None = None,
) -> StoredAgent:
    """A new agent row (and its first status); init_task_data is JSON text, stored as is
    (the column is named only when there is some: a version-1 file has none)."""
    values = (agent_id, kind, task_run_id, worker_id, unit_id, agent_registration_id, status)
    if init_task_data is None:
        cursor.execute(_INSERT_AGENT, (*values, now, now))
    else:
        cursor.execute(_INSERT_AGENT_WITH_DATA, (*values, now, now, init_task_data))
    record_status(cursor, agent_id, status, now)
    return StoredAgent(
        agent_id, kind, task_run_id, worker_id, unit_id, agent_registration_id, status, now, now
    )


def reserve_unit(
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
    for start in range(0, len(candidates), IN_CHUNK):
        chunk = candidates[start : start + IN_CHUNK]
        cursor.execute(
            "SELECT id FROM units WHERE task_run_id = ? AND status = ?"
            f" AND id IN ({marks(len(chunk))})",
            (task_run_id, UnitStatus.AVAILABLE, *chunk),
        )
        available = {unit_id for (unit_id,) in cursor.fetchall()}
        chosen = next((unit_id for unit_id in chunk if unit_id in available), None)
        if chosen is not None:
            break
    if chosen is None:
        return None
    cursor.execute(UNIT_COLUMNS + " WHERE u.id = ?", (chosen,))
    return take_unit(
        cursor,
        cursor.fetchone(),
        task_run_id,
        worker_id,
        agent_id,
        agent_registration_id,
        status,
        init_from_assignment,
        now,
    )


def take_unit(
    cursor: Cursor,
    unit_row: Sequence[Any],
    task_run_id: int,
    worker_id: int,
    agent_id: str,
    agent_registration_id: str | None,
    status: str,
    init_from_assignment: bool,
    now: float,
) -> Unit:
    """Reserve an available unit (its row as UNIT_COLUMNS reads it, in this transaction)
    for a new unit agent: the unit as reserved, its data decoded."""
    unit = unit_from_row(unit_row)
    cursor.execute(
        "UPDATE units SET status = ?, agent_id = ? WHERE id = ? AND status = ?",
        (UnitStatus.RESERVED, agent_id, unit.id, UnitStatus.AVAILABLE),
    )
    if cursor.rowcount != 1:
        raise StorageError(f"unit {unit.id} changed while being reserved")
    insert_agent(
        cursor,
        agent_id,
        AgentKind.UNIT,
        task_run_id,
        worker_id,
        unit.id,
        agent_registration_id,
        status,
        now,
        # The stored JSON as it is: nothing decoded or encoded.
        init_task_data=unit_row[UNIT_DATA] if init_from_assignment else None,
    )
    return attrs.evolve(unit, status=UnitStatus.RESERVED, agent_id=agent_id)


# --- reading agents ---


def get_agent(cursor: Cursor, agent_id: str) -> StoredAgent | None:
    cursor.execute(_AGENT_COLUMNS + " WHERE agent_id = ?", (agent_id,))
    row = cursor.fetchone()
    return None if row is None else StoredAgent(*row)


def find_agent_by_registration_id(cursor: Cursor, agent_registration_id: str) -> StoredAgent | None:
    cursor.execute(
        _AGENT_COLUMNS + " WHERE agent_registration_id = ? ORDER BY seq DESC LIMIT 1",
        (agent_registration_id,),
    )
    row = cursor.fetchone()
    return None if row is None else StoredAgent(*row)


def list_agents(
    cursor: Cursor, task_run_id: int | None, worker_id: int | None
) -> list[StoredAgent]:
    clause, params = where({"task_run_id = ?": task_run_id, "worker_id = ?": worker_id})
    cursor.execute(_AGENT_COLUMNS + clause + " ORDER BY seq", params)
    return [StoredAgent(*row) for row in cursor.fetchall()]


def recently_finished_agents(
    cursor: Cursor, task_run_id: int, since: float, limit: int
) -> dict[str, str]:
    final = sorted(FINAL)
    cursor.execute(
        f"SELECT agent_id, status FROM agents WHERE task_run_id = ? AND updated_at >= ?"
        f" AND status IN ({marks(len(final))}) ORDER BY updated_at DESC LIMIT ?",
        (task_run_id, since, *final, limit),
    )
    return dict(cursor.fetchall())


# --- statuses ---


def status_history(cursor: Cursor, agent_id: str) -> list[StatusChange]:
    cursor.execute(
        "SELECT status, changed_at FROM agent_status_history WHERE agent_id = ? ORDER BY id",
        (agent_id,),
    )
    return [StatusChange(*row) for row in cursor.fetchall()]


# --- what the limits count ---


def count_active_agents(
    cursor: Cursor, worker_id: int, task_run_id: int | None, kind: str | None
) -> int:
    clause, params = where(
        {
            "worker_id = ?": worker_id,
            _IS_ACTIVE: _ACTIVE,
            "task_run_id = ?": task_run_id,
            "kind = ?": kind,
        }
    )
    cursor.execute("SELECT COUNT(*) FROM agents" + clause, params)
    count: int = cursor.fetchone()[0]
    return count


def count_worker_units(cursor: Cursor, task_run_id: int, worker_id: int) -> int:
    cursor.execute(
        "SELECT COUNT(DISTINCT unit_id) FROM agents WHERE task_run_id = ? AND worker_id = ?"
        f" AND kind = ? AND status IN ({marks(len(_COUNTED))})",
        (task_run_id, worker_id, AgentKind.UNIT, *_COUNTED),
    )
    count: int = cursor.fetchone()[0]
    return count


def worked_on(cursor: Cursor, task_run_id: int, worker_id: int) -> WorkedOn:
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


# --- restart: resume and recovery ---


def set_agent_init_data(cursor: Cursor, agent_id: str, data: str) -> None:
    cursor.execute("UPDATE agents SET init_task_data = ? WHERE agent_id = ?", (data, agent_id))
    if cursor.rowcount != 1:
        raise NoSuchAgent(f"no agent {agent_id!r}")


def resumable_agents(cursor: Cursor, task_run_id: int) -> list[ResumableAgent]:
    # One query per kind of row, each narrowed by the same subquery: the cost does not
    # grow with the number of agents, and there is no IN list to chunk.
    clause, params = where({"task_run_id = ?": task_run_id, _IS_ACTIVE: _ACTIVE})

    def active(columns: str) -> str:
        return f"SELECT {columns} FROM agents" + clause

    cursor.execute(active(f"{_AGENT_FIELDS}, init_task_data") + " ORDER BY seq", params)
    rows = cursor.fetchall()
    if not rows:
        return []
    cursor.execute(WORKER_COLUMNS + f" WHERE id IN ({active('worker_id')})", params)
    workers = {row[0]: Worker(*row) for row in cursor.fetchall()}
    cursor.execute(UNIT_COLUMNS + f" WHERE u.id IN ({active('unit_id')})", params)
    units = {unit.id: unit for unit in map(unit_from_row, cursor.fetchall())}
    cursor.execute(
        LIVE_UPDATE_COLUMNS + f" WHERE agent_id IN ({active('agent_id')}) ORDER BY id", params
    )
    updates: dict[str, list[LiveUpdate]] = {}
    for row in cursor.fetchall():
        update = live_update_from_row(row)
        updates.setdefault(update.agent_id, []).append(update)
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


def recover_after_restart(cursor: Cursor, keep_task_run_id: int | None, now: float) -> list[str]:
    clause, params = where({_IS_ACTIVE: _ACTIVE, "task_run_id <> ?": keep_task_run_id})
    cursor.execute("SELECT agent_id, unit_id FROM agents" + clause + " ORDER BY seq", params)
    stranded = cursor.fetchall()
    for agent_id, unit_id in stranded:
        change_status(cursor, agent_id, Status.DISCONNECT, now)
        if unit_id is not None:
            cursor.execute(
                "UPDATE units SET status = ?, agent_id = NULL"
                " WHERE id = ? AND agent_id = ? AND status = ?",
                (unit_status_if_lost(), unit_id, agent_id, UnitStatus.RESERVED),
            )
    return [agent_id for agent_id, _ in stranded]
