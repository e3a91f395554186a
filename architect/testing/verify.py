"""What the bots saw, checked against what the daemon stored.

- every submission the router acknowledged (200) is stored, once;
- every live update a page sent while its agent worked reached the task (the backend
  logs each update it takes: the database's live updates of the agent);
- every client-bound update the task sent an agent before it ended reached its page,
  when the page stayed until it heard the end (live, or replayed after a reconnection);
- no update came twice on one socket, no remote call was answered twice (the pages'
  own count, in the records).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from architect.lifecycle import FINAL
from architect.storage import Database, SubmissionKind
from architect.storage.interface import Direction
from architect.testing.load import WorkerRecord

EXAMPLES = 5  # agents named per kind of problem


@attrs.define
class Checks:
    acknowledged: int = 0
    stored: int = 0  # of the acknowledged ones
    unstored: list[str] = attrs.field(factory=list)  # acknowledged, not stored: agent ids
    stored_twice: list[str] = attrs.field(factory=list)
    sent_to_task: int = 0
    lost_to_task: list[str] = attrs.field(factory=list)  # "agent: update id"
    sent_to_pages: int = 0
    lost_to_pages: list[str] = attrs.field(factory=list)
    duplicated: list[str] = attrs.field(factory=list)
    checked: bool = True  # False when the database could not be read
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "note": self.note,
            "submissions_acknowledged": self.acknowledged,
            "submissions_stored": self.stored,
            "acknowledged_not_stored": len(self.unstored),
            "stored_twice": len(self.stored_twice),
            "live_updates_to_task": self.sent_to_task,
            "lost_to_task": len(self.lost_to_task),
            "live_updates_to_pages": self.sent_to_pages,
            "lost_to_pages": len(self.lost_to_pages),
            "duplicated": len(self.duplicated),
            "examples": {
                "acknowledged_not_stored": self.unstored[:EXAMPLES],
                "stored_twice": self.stored_twice[:EXAMPLES],
                "lost_to_task": self.lost_to_task[:EXAMPLES],
                "lost_to_pages": self.lost_to_pages[:EXAMPLES],
                "duplicated": self.duplicated[:EXAMPLES],
            },
        }


async def check(database: Database, run_id: int, records: list[WorkerRecord]) -> Checks:
    """Compare the records with the database of task run `run_id`."""
    checks = Checks()
    stored = Counter(
        (s.agent_id, s.kind) for s in await database.list_submissions(task_run_id=run_id)
    )
    for record in records:
        checks.duplicated += [f"{record.name}: {what}" for what in record.duplicates]
        for agent in record.agents:
            await _check_agent(database, agent, stored, checks)
    return checks


async def _check_agent(
    database: Database, agent: Any, stored: Counter[tuple[str, str]], checks: Checks
) -> None:
    kind = SubmissionKind.ONBOARDING if agent.onboarding else SubmissionKind.UNIT
    times = stored[(agent.agent_id, kind)]
    if agent.acknowledged:
        checks.acknowledged += 1
        if times:
            checks.stored += 1
        else:
            checks.unstored.append(agent.agent_id)
    if times > 1:
        checks.stored_twice.append(agent.agent_id)
    if agent.onboarding or not (agent.must_reach_task or agent.received or agent.heard_the_end):
        return  # no live traffic to check
    updates = await database.live_updates(agent.agent_id)
    taken = {u.update_id for u in updates if u.direction == Direction.MEPHISTO_BOUND}
    checks.sent_to_task += len(agent.must_reach_task)
    checks.lost_to_task += [f"{agent.agent_id}: {i}" for i in sorted(agent.must_reach_task - taken)]
    if not agent.heard_the_end:
        return  # its page left before the end: what it missed is not the daemon's loss
    history = await database.status_history(agent.agent_id)
    ended = next((change.changed_at for change in history if change.status in FINAL), None)
    sent = {
        u.update_id
        for u in updates
        if u.direction == Direction.CLIENT_BOUND
        and u.update_id is not None
        and (ended is None or u.created_at <= ended)
    }
    checks.sent_to_pages += len(sent)
    checks.lost_to_pages += [f"{agent.agent_id}: {i}" for i in sorted(sent - agent.received)]
