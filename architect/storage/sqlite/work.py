"""A registration's common path in one transaction: AgentRecords.register_for_work on SQLite.

Without task hooks the pipeline's checks need nothing but the database, so they run
where the data is, one after another in one interaction: one trip to the database
thread and one commit (shared with whatever else is in its group) instead of one per
stage. Being one transaction on the one writing connection, the checks and the
reservation cannot be split by another registration of the same worker.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

from architect.lifecycle import AgentKind, UnitStatus
from architect.protocol import FailureReason, Status
from architect.storage.interface import WorkAnswer, WorkRequest
from architect.storage.sqlite.agents import (
    count_active_agents,
    count_worker_units,
    find_agent_by_registration_id,
    take_unit,
)
from architect.storage.sqlite.engine import EnginePart
from architect.storage.sqlite.runs import UNIT_COLUMNS
from architect.storage.sqlite.sql import Cursor, check_known
from architect.storage.sqlite.workers import find_or_create_worker_row


class SQLiteWorkRequests(EnginePart):
    """register_for_work (part of AgentRecords) on the engine's file."""

    def register_for_work(self, request: WorkRequest) -> Deferred[WorkAnswer]:
        check_known(request.status, Status.ALL, "agent status")
        return self._engine.run(True, register_for_work, request, self._engine.now())


def register_for_work(cursor: Cursor, request: WorkRequest, now: float) -> WorkAnswer:
    worker, created = find_or_create_worker_row(
        cursor, request.provider_type, request.worker_name, now
    )
    run = request.task_run_id
    if request.look_up_registration and request.agent_registration_id is not None:
        known = find_agent_by_registration_id(cursor, request.agent_registration_id)
        if known is not None and known.task_run_id == run:
            return WorkAnswer(worker, known_registration=True)
    # A worker created just now holds no qualification and no agent: nothing to read.
    if not request.qualified({} if created else held_values(cursor, worker.id)):
        return WorkAnswer(worker, failure_reason=FailureReason.NOT_QUALIFIED)
    if not created:
        limit = request.allowed_concurrent
        if limit and count_active_agents(cursor, worker.id, run, None) >= limit:
            return WorkAnswer(worker, failure_reason=FailureReason.TOO_MANY_CONCURRENT)
        limit = request.maximum_units_per_worker
        if limit and count_worker_units(cursor, run, worker.id) >= limit:
            return WorkAnswer(worker, failure_reason=FailureReason.MAX_UNITS)
    cursor.execute(FIRST_NEW_UNIT, (run, UnitStatus.AVAILABLE, run, worker.id, AgentKind.UNIT))
    row = cursor.fetchone()
    if row is None:
        return WorkAnswer(worker, failure_reason=FailureReason.NO_WORK)
    unit = take_unit(
        cursor,
        row,
        run,
        worker.id,
        request.agent_id,
        request.agent_registration_id,
        request.status,
        request.init_from_assignment,
        now,
    )
    return WorkAnswer(worker, unit=unit)


def held_values(cursor: Cursor, worker_id: int) -> dict[str, Any]:
    """The worker's qualifications: name -> value."""
    cursor.execute(
        "SELECT q.name, g.value FROM granted_qualifications g"
        " JOIN qualifications q ON q.id = g.qualification_id WHERE g.worker_id = ?",
        (worker_id,),
    )
    return {name: json.loads(value) for name, value in cursor.fetchall()}


# The first available unit, in the run's order, of an assignment the worker has had no
# unit agent for (whatever became of it): read in order from units_available_in_order,
# the worker's assignments looked up once (the subquery does not depend on the row).
# The row is UNIT_COLUMNS' (the join only reads the one assignment of the unit found).
# Parameters: run, available, run, worker, unit kind.
FIRST_NEW_UNIT = (
    UNIT_COLUMNS + " WHERE u.task_run_id = ? AND u.status = ?"
    " AND u.assignment_id NOT IN (SELECT d.assignment_id FROM agents g"
    " JOIN units d ON d.id = g.unit_id"
    " WHERE g.task_run_id = ? AND g.worker_id = ? AND g.kind = ?)"
    " ORDER BY u.assignment_index, u.unit_index LIMIT 1"
)
