"""Workers and their qualifications on SQLite: the query functions and the part of the database."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred

from architect.storage.interface import GrantedQualification, Worker
from architect.storage.sqlite.engine import EnginePart
from architect.storage.sqlite.sql import Cursor, inserted_id, json_text


class SQLiteWorkersAndQualifications(EnginePart):
    """WorkersAndQualifications on the engine's file."""

    def find_or_create_worker(self, provider_type: str, worker_name: str) -> Deferred[Worker]:
        now = self._engine.now()
        return self._engine.run(True, find_or_create_worker, provider_type, worker_name, now)

    def get_worker(self, worker_id: int) -> Deferred[Worker | None]:
        return self._engine.run(False, get_worker, worker_id)

    def list_workers(self) -> Deferred[list[Worker]]:
        return self._engine.run(False, list_workers)

    def grant_qualification(self, worker_id: int, name: str, value: Any) -> Deferred[None]:
        encoded = json_text(value)
        now = self._engine.now()
        return self._engine.run(True, grant_qualification, worker_id, name, encoded, now)

    def revoke_qualification(self, worker_id: int, name: str) -> Deferred[bool]:
        return self._engine.run(True, revoke_qualification, worker_id, name)

    def get_qualifications(self, worker_id: int) -> Deferred[dict[str, GrantedQualification]]:
        return self._engine.run(False, get_qualifications, worker_id)


WORKER_COLUMNS = "SELECT id, provider_type, worker_name, created_at FROM workers"


def find_or_create_worker(
    cursor: Cursor, provider_type: str, worker_name: str, now: float
) -> Worker:
    worker, _ = find_or_create_worker_row(cursor, provider_type, worker_name, now)
    return worker


def find_or_create_worker_row(
    cursor: Cursor, provider_type: str, worker_name: str, now: float
) -> tuple[Worker, bool]:
    """The worker, and whether it was created just now."""
    cursor.execute(
        WORKER_COLUMNS + " WHERE provider_type = ? AND worker_name = ?",
        (provider_type, worker_name),
    )
    row = cursor.fetchone()
    if row is not None:
        return Worker(*row), False
    cursor.execute(
        "INSERT INTO workers (provider_type, worker_name, created_at) VALUES (?, ?, ?)",
        (provider_type, worker_name, now),
    )
    return Worker(inserted_id(cursor), provider_type, worker_name, now), True


def get_worker(cursor: Cursor, worker_id: int) -> Worker | None:
    cursor.execute(WORKER_COLUMNS + " WHERE id = ?", (worker_id,))
    row = cursor.fetchone()
    return None if row is None else Worker(*row)


def list_workers(cursor: Cursor) -> list[Worker]:
    cursor.execute(WORKER_COLUMNS + " ORDER BY id")
    return [Worker(*row) for row in cursor.fetchall()]


def grant_qualification(cursor: Cursor, worker_id: int, name: str, value: str, now: float) -> None:
    cursor.execute("SELECT id FROM qualifications WHERE name = ?", (name,))
    row = cursor.fetchone()
    if row is None:
        cursor.execute("INSERT INTO qualifications (name, created_at) VALUES (?, ?)", (name, now))
        qualification_id = inserted_id(cursor)
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


def revoke_qualification(cursor: Cursor, worker_id: int, name: str) -> bool:
    cursor.execute(
        "DELETE FROM granted_qualifications WHERE worker_id = ? AND qualification_id IN"
        " (SELECT id FROM qualifications WHERE name = ?)",
        (worker_id, name),
    )
    return cursor.rowcount > 0


def get_qualifications(cursor: Cursor, worker_id: int) -> dict[str, GrantedQualification]:
    cursor.execute(
        "SELECT q.name, g.value, g.granted_at FROM granted_qualifications g"
        " JOIN qualifications q ON q.id = g.qualification_id WHERE g.worker_id = ?",
        (worker_id,),
    )
    return {
        name: GrantedQualification(name, json.loads(value), granted_at)
        for name, value, granted_at in cursor.fetchall()
    }
