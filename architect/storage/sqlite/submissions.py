"""Submissions, their files and the live-update logs on SQLite: query functions and the part."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from architect.lifecycle import UnitStatus
from architect.private import create_private
from architect.protocol import Status
from architect.storage.interface import (
    Direction,
    LiveUpdate,
    Submission,
    SubmissionFile,
    SubmissionKind,
)
from architect.storage.sqlite.engine import FILES_DIR, EnginePart
from architect.storage.sqlite.sql import (
    Cursor,
    check_known,
    exists,
    inserted_id,
    json_text,
    where,
)
from architect.storage.sqlite.statuses import set_agent_status


class SQLiteSubmissionsAndLiveUpdates(EnginePart):
    """SubmissionsAndLiveUpdates on the engine's file (and its files/ folder)."""

    def write_file(
        self, original_name: str, content: bytes, mimetype: str
    ) -> Deferred[SubmissionFile]:
        relative = f"{FILES_DIR}/{uuid.uuid4().hex}-{_safe_file_name(original_name)}"
        target = self._engine.data_dir / relative

        def write() -> SubmissionFile:
            with os.fdopen(create_private(target), "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            return SubmissionFile(original_name, relative, len(content), mimetype)

        reactor = self._engine.reactor
        return deferToThreadPool(reactor, reactor.getThreadPool(), write)

    def store_submission(
        self,
        agent_id: str,
        kind: str,
        data: Any,
        dedupe_key: str | None = None,
        files: Sequence[SubmissionFile] = (),
        agent_status: str | None = None,
        unit_status: str | None = None,
    ) -> Deferred[bool]:
        check_known(kind, SubmissionKind.ALL, "submission kind")
        status = None
        if agent_status is not None:
            check_known(agent_status, Status.ALL, "agent status")
            if unit_status is not None:
                check_known(unit_status, UnitStatus.ALL, "unit status")
            status = (agent_status, unit_status)
        return self._engine.run(
            True,
            store_submission,
            agent_id,
            kind,
            json_text(data),
            dedupe_key,
            list(files),
            self._engine.now(),
            status,
        )

    def list_submissions(
        self, agent_id: str | None = None, task_run_id: int | None = None, kind: str | None = None
    ) -> Deferred[list[Submission]]:
        if kind is not None:
            check_known(kind, SubmissionKind.ALL, "submission kind")
        return self._engine.run(False, list_submissions, agent_id, task_run_id, kind)

    def store_live_update(
        self, agent_id: str, direction: str, data: Any, update_id: str | None = None
    ) -> Deferred[bool]:
        check_known(direction, Direction.ALL, "direction")
        encoded = json_text(data)
        now = self._engine.now()
        return self._engine.run(
            True, store_live_update, agent_id, direction, encoded, update_id, now
        )

    def live_updates(
        self, agent_id: str, direction: str | None = None
    ) -> Deferred[list[LiveUpdate]]:
        if direction is not None:
            check_known(direction, Direction.ALL, "direction")
        return self._engine.run(False, live_updates, agent_id, direction)


def _safe_file_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return safe[-100:] or "file"


# --- submissions and their files ---


def store_submission(
    cursor: Cursor,
    agent_id: str,
    kind: str,
    data: str,
    dedupe_key: str | None,
    files: list[SubmissionFile],
    now: float,
    status: tuple[str, str | None] | None = None,
) -> bool:
    if status is not None:  # whether or not the submission is a repeat: see the interface
        set_agent_status(cursor, agent_id, status[0], status[1], now)
    if _is_repeat(cursor, agent_id, kind, dedupe_key):
        return False
    cursor.execute(
        "INSERT INTO submissions (agent_id, kind, data, dedupe_key, received_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (agent_id, kind, data, dedupe_key, now),
    )
    submission_id = inserted_id(cursor)
    for file in files:
        cursor.execute(
            "INSERT INTO submission_files"
            " (submission_id, original_name, stored_path, size, mimetype) VALUES (?, ?, ?, ?, ?)",
            (submission_id, file.original_name, file.stored_path, file.size, file.mimetype),
        )
    return True


def _is_repeat(cursor: Cursor, agent_id: str, kind: str, dedupe_key: str | None) -> bool:
    """Whether a submission is one already stored: its dedupe key is known, or (an agent
    submits its unit once) it is a second unit submission of the agent, as when a worker's
    retry after a crash came between the commit and the agent's `completed`, whatever its
    timestamp. One statement for both checks."""
    checks: list[str] = []
    params: list[Any] = []
    if dedupe_key is not None:
        checks.append("SELECT 1 FROM submissions WHERE dedupe_key = ?")
        params.append(dedupe_key)
    if kind == SubmissionKind.UNIT:
        checks.append("SELECT 1 FROM submissions WHERE agent_id = ? AND kind = ?")
        params += [agent_id, kind]
    return bool(checks) and exists(cursor, " UNION ALL ".join(checks) + " LIMIT 1", params)


def list_submissions(
    cursor: Cursor, agent_id: str | None, task_run_id: int | None, kind: str | None
) -> list[Submission]:
    clause, params = where(
        {"s.agent_id = ?": agent_id, "g.task_run_id = ?": task_run_id, "s.kind = ?": kind}
    )
    source = " FROM submissions s JOIN agents g ON g.agent_id = s.agent_id"
    cursor.execute(
        "SELECT f.submission_id, f.original_name, f.stored_path, f.size, f.mimetype"
        + source
        + " JOIN submission_files f ON f.submission_id = s.id"
        + clause
        + " ORDER BY f.id",
        params,
    )
    files: dict[int, list[SubmissionFile]] = {}
    for submission_id, *fields in cursor.fetchall():
        files.setdefault(submission_id, []).append(SubmissionFile(*fields))
    cursor.execute(
        "SELECT s.id, s.agent_id, s.kind, s.data, s.dedupe_key, s.received_at"
        + source
        + clause
        + " ORDER BY s.id",
        params,
    )
    return [
        Submission(
            id=row[0],
            agent_id=row[1],
            kind=row[2],
            data=json.loads(row[3]),
            dedupe_key=row[4],
            received_at=row[5],
            files=tuple(files.get(row[0], ())),
        )
        for row in cursor.fetchall()
    ]


# --- live updates ---

LIVE_UPDATE_COLUMNS = "SELECT agent_id, direction, update_id, data, created_at FROM live_updates"


def live_update_from_row(row: Sequence[Any]) -> LiveUpdate:
    """The LiveUpdate of a row read with LIVE_UPDATE_COLUMNS."""
    agent_id, direction, update_id, data, created_at = row
    return LiveUpdate(agent_id, direction, update_id, json.loads(data), created_at)


def store_live_update(
    cursor: Cursor, agent_id: str, direction: str, data: str, update_id: str | None, now: float
) -> bool:
    if update_id is not None and exists(
        cursor,
        "SELECT 1 FROM live_updates WHERE agent_id = ? AND direction = ? AND update_id = ?",
        (agent_id, direction, update_id),
    ):
        return False
    cursor.execute(
        "INSERT INTO live_updates (agent_id, direction, update_id, data, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (agent_id, direction, update_id, data, now),
    )
    return True


def live_updates(cursor: Cursor, agent_id: str, direction: str | None) -> list[LiveUpdate]:
    clause, params = where({"agent_id = ?": agent_id, "direction = ?": direction})
    cursor.execute(LIVE_UPDATE_COLUMNS + clause + " ORDER BY id", params)
    return [live_update_from_row(row) for row in cursor.fetchall()]
