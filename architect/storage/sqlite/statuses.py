"""An agent's status changes as SQL: the agent's row, its history, and its unit.

Apart from agents.py so that a submission can change its agent's status in its own
transaction (submissions.py) without the two modules importing each other.
"""

from __future__ import annotations

from architect.lifecycle import UnitStatus
from architect.storage.interface import NoSuchAgent
from architect.storage.sqlite.sql import Cursor


def set_agent_status(
    cursor: Cursor, agent_id: str, status: str, unit_status: str | None, now: float
) -> bool:
    # Changed in the statement that reads the agent's unit: one statement, not two.
    cursor.execute(
        "UPDATE agents SET status = ?, updated_at = ? WHERE agent_id = ? AND status != ?"
        " RETURNING unit_id",
        (status, now, agent_id, status),
    )
    row = cursor.fetchone()
    changed = row is not None
    if changed:
        record_status(cursor, agent_id, status, now)
    else:  # already in that status, or no such agent
        cursor.execute("SELECT unit_id FROM agents WHERE agent_id = ?", (agent_id,))
        row = cursor.fetchone()
        if row is None:
            raise NoSuchAgent(f"no agent {agent_id!r}")
    (unit_id,) = row
    if unit_status is not None and unit_id is not None:
        move_unit(cursor, unit_id, agent_id, unit_status)
    return changed


def change_status(cursor: Cursor, agent_id: str, status: str, now: float) -> None:
    cursor.execute(
        "UPDATE agents SET status = ?, updated_at = ? WHERE agent_id = ?",
        (status, now, agent_id),
    )
    record_status(cursor, agent_id, status, now)


def record_status(cursor: Cursor, agent_id: str, status: str, now: float) -> None:
    cursor.execute(
        "INSERT INTO agent_status_history (agent_id, status, changed_at) VALUES (?, ?, ?)",
        (agent_id, status, now),
    )


def move_unit(cursor: Cursor, unit_id: int, agent_id: str, unit_status: str) -> None:
    """Move a unit this agent still holds; releasing it to the pool forgets the agent."""
    holder = None if unit_status == UnitStatus.AVAILABLE else agent_id
    cursor.execute(
        "UPDATE units SET status = ?, agent_id = ? WHERE id = ? AND agent_id = ?",
        (unit_status, holder, unit_id, agent_id),
    )
