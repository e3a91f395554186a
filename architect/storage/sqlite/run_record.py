"""What a run keeps beyond its work, on SQLite: settings changed at run time (with each
change) and the agents' connection events, bounded per agent and kind."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred

from architect.connection_events import (
    EVENTS_KEPT_PER_KIND,
    ConnectionEvent,
    ConnectionEventKind,
    EventRepeats,
)
from architect.storage.interface import KeptSetting, SettingChange
from architect.storage.sqlite.engine import EnginePart
from architect.storage.sqlite.sql import Cursor, check_known, json_text


class SQLiteRunRecord(EnginePart):
    """RunRecord on the engine's file."""

    def kept_settings(self, task_run_id: int) -> Deferred[dict[str, KeptSetting]]:
        return self._engine.run(False, kept_settings, task_run_id)

    def keep_setting(
        self, task_run_id: int, name: str, value: Any, ini_value: Any, reason: str
    ) -> Deferred[None]:
        encoded = None if value is None else json_text(value)
        return self._engine.run(
            True,
            keep_setting,
            task_run_id,
            name,
            encoded,
            json_text(ini_value),
            reason,
            self._engine.now(),
        )

    def setting_changes(self, task_run_id: int) -> Deferred[list[SettingChange]]:
        return self._engine.run(False, setting_changes, task_run_id)

    def store_connection_events(
        self, events: Sequence[ConnectionEvent], repeats: Sequence[EventRepeats] = ()
    ) -> Deferred[int]:
        for kind in {e.event for e in events} | {r.event for r in repeats}:
            check_known(kind, ConnectionEventKind.ALL, "connection event")
        return self._engine.run(True, store_connection_events, list(events), list(repeats))

    def connection_events(
        self, task_run_id: int
    ) -> Deferred[tuple[list[ConnectionEvent], list[EventRepeats]]]:
        return self._engine.run(False, connection_events, task_run_id)


# --- settings ---


def kept_settings(cursor: Cursor, task_run_id: int) -> dict[str, KeptSetting]:
    cursor.execute(
        "SELECT name, value, ini_value, changed_at FROM run_settings WHERE task_run_id = ?",
        (task_run_id,),
    )
    return {
        name: KeptSetting(name, json.loads(value), json.loads(ini_value), changed_at)
        for name, value, ini_value, changed_at in cursor.fetchall()
    }


def keep_setting(
    cursor: Cursor,
    task_run_id: int,
    name: str,
    value: str | None,
    ini_value: str,
    reason: str,
    now: float,
) -> None:
    cursor.execute(
        "DELETE FROM run_settings WHERE task_run_id = ? AND name = ?", (task_run_id, name)
    )
    if value is not None:
        cursor.execute(
            "INSERT INTO run_settings (task_run_id, name, value, ini_value, changed_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (task_run_id, name, value, ini_value, now),
        )
    cursor.execute(
        "INSERT INTO run_setting_changes (task_run_id, name, value, ini_value, reason,"
        " changed_at) VALUES (?, ?, ?, ?, ?, ?)",
        (task_run_id, name, value, ini_value, reason, now),
    )


def setting_changes(cursor: Cursor, task_run_id: int) -> list[SettingChange]:
    cursor.execute(
        "SELECT name, value, ini_value, reason, changed_at FROM run_setting_changes"
        " WHERE task_run_id = ? ORDER BY id",
        (task_run_id,),
    )
    return [
        SettingChange(name, None if value is None else json.loads(value), json.loads(ini), r, at)
        for name, value, ini, r, at in cursor.fetchall()
    ]


# --- connection events ---


def store_connection_events(
    cursor: Cursor, events: list[ConnectionEvent], repeats: list[EventRepeats]
) -> int:
    kept = 0
    known: dict[str, bool] = {}
    for event in events:
        if not _agent_exists(cursor, known, event.agent_id):
            continue  # an agent of no run here (another backend's, or made up)
        cursor.execute(
            "SELECT kept FROM connection_event_repeats WHERE agent_id = ? AND event = ?",
            (event.agent_id, event.event),
        )
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                "INSERT INTO connection_event_repeats (agent_id, event, kept, repeats, last_at)"
                " VALUES (?, ?, 0, 0, ?)",
                (event.agent_id, event.event, event.happened_at),
            )
        if row is not None and row[0] >= EVENTS_KEPT_PER_KIND:
            _count(cursor, event.agent_id, event.event, 1, event.happened_at)
            continue
        cursor.execute(
            "INSERT INTO connection_events (agent_id, event, happened_at, code, seconds)"
            " VALUES (?, ?, ?, ?, ?)",
            (event.agent_id, event.event, event.happened_at, event.code, event.seconds),
        )
        cursor.execute(
            "UPDATE connection_event_repeats SET kept = kept + 1, last_at = ?"
            " WHERE agent_id = ? AND event = ?",
            (event.happened_at, event.agent_id, event.event),
        )
        kept += 1
    for counted in repeats:  # events its sender counted past its own bound, not sent
        if counted.repeats <= 0 or not _agent_exists(cursor, known, counted.agent_id):
            continue
        cursor.execute(
            "SELECT 1 FROM connection_event_repeats WHERE agent_id = ? AND event = ?",
            (counted.agent_id, counted.event),
        )
        if cursor.fetchone() is None:
            cursor.execute(
                "INSERT INTO connection_event_repeats (agent_id, event, kept, repeats, last_at)"
                " VALUES (?, ?, 0, 0, ?)",
                (counted.agent_id, counted.event, counted.last_at),
            )
        _count(cursor, counted.agent_id, counted.event, counted.repeats, counted.last_at)
    return kept


def _agent_exists(cursor: Cursor, known: dict[str, bool], agent_id: str) -> bool:
    exists = known.get(agent_id)
    if exists is None:
        cursor.execute("SELECT 1 FROM agents WHERE agent_id = ?", (agent_id,))
        exists = known[agent_id] = cursor.fetchone() is not None
    return exists


def _count(cursor: Cursor, agent_id: str, event: str, more: int, at: float) -> None:
    """`more` events of the kind past the bound, the last of them at `at`."""
    cursor.execute(
        "UPDATE connection_event_repeats SET repeats = repeats + ?,"
        " last_at = CASE WHEN last_at > ? THEN last_at ELSE ? END"
        " WHERE agent_id = ? AND event = ?",
        (more, at, at, agent_id, event),
    )


def connection_events(
    cursor: Cursor, task_run_id: int
) -> tuple[list[ConnectionEvent], list[EventRepeats]]:
    cursor.execute(
        "SELECT e.agent_id, e.event, e.happened_at, e.code, e.seconds FROM connection_events e"
        " JOIN agents a ON a.agent_id = e.agent_id WHERE a.task_run_id = ?"
        " ORDER BY e.happened_at, e.id",
        (task_run_id,),
    )
    events = [ConnectionEvent(*row) for row in cursor.fetchall()]
    cursor.execute(
        "SELECT r.agent_id, r.event, r.repeats, r.last_at FROM connection_event_repeats r"
        " JOIN agents a ON a.agent_id = r.agent_id WHERE a.task_run_id = ? AND r.repeats > 0"
        " ORDER BY r.last_at",
        (task_run_id,),
    )
    return events, [EventRepeats(*row) for row in cursor.fetchall()]
