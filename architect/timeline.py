"""`architect results --timeline`: each agent's story, from what the database keeps, one
JSON object per event, in time order per agent: `registered` (its creation, with its
worker, unit and registration id), every `status` change with its time (`disconnect`,
`expired`, `completed`, ...: the router's word that a page went away arrives as
`disconnect`), each `submission` (its kind), and the agent's live traffic in both
directions as `live` spans, with a `silence` wherever its browser sent nothing for
`SILENCE` seconds or more while the agent was at work; and its connection events as the
router and the backend saw them (architect/connection_events.py): `socket_open`,
`socket_close` (with its `code`), `reload`, `heartbeat_gap` (with its `seconds`),
`router_lost`, `registered_again`. Past the bound kept per agent and kind, a `more` line
says how many more of a `kind` there were (`count`), the last at its `time`.

Enough to settle "I was disconnected, pay me": when the agent was made, when its page was
last heard of, when and why it stopped, and whether anything was submitted.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, TextIO

from architect.storage import ConnectionEvent, Database, EventRepeats, TaskRun
from architect.storage.interface import Direction

SILENCE = 60.0  # seconds without a live update from the browser worth a line


def silences(times: list[float], at_least: float = SILENCE) -> list[tuple[float, float]]:
    """(start, seconds) of each gap of `at_least` seconds or more between times in order."""
    return [
        (before, round(after - before, 3))
        for before, after in itertools.pairwise(times)
        if after - before >= at_least
    ]


def connection_lines(
    events: list[ConnectionEvent], repeats: list[EventRepeats]
) -> dict[str, list[dict[str, Any]]]:
    """Each agent's connection events as timeline lines (without who), in time order."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        line: dict[str, Any] = {"time": event.happened_at, "event": event.event}
        if event.code is not None:
            line["code"] = event.code
        if event.seconds is not None:
            line["seconds"] = event.seconds
        lines.setdefault(event.agent_id, []).append(line)
    for counted in repeats:
        more = {"time": counted.last_at, "event": "more", "kind": counted.event}
        lines.setdefault(counted.agent_id, []).append({**more, "count": counted.repeats})
    return lines


async def agent_events(database: Database, run: TaskRun) -> list[dict[str, Any]]:
    workers = {w.id: w for w in await database.list_workers()}
    connections = connection_lines(*await database.connection_events(run.id))
    submissions: dict[str, list[Any]] = {}
    for submission in await database.list_submissions(task_run_id=run.id):
        submissions.setdefault(submission.agent_id, []).append(submission)
    events: list[dict[str, Any]] = []
    for agent in await database.list_agents(task_run_id=run.id):
        worker = workers.get(agent.worker_id)
        who = {
            "agent_id": agent.agent_id,
            "worker_name": worker.worker_name if worker is not None else None,
        }
        own: list[dict[str, Any]] = [
            {
                **who,
                "time": agent.created_at,
                "event": "registered",
                "kind": agent.kind,
                "unit_id": agent.unit_id,
                "agent_registration_id": agent.agent_registration_id,
            }
        ]
        for change in await database.status_history(agent.agent_id):
            own.append(
                {**who, "time": change.changed_at, "event": "status", "status": change.status}
            )
        for submission in submissions.get(agent.agent_id, []):
            own.append(
                {
                    **who,
                    "time": submission.received_at,
                    "event": "submission",
                    "kind": submission.kind,
                }
            )
        updates = await database.live_updates(agent.agent_id)
        from_browser = [u.created_at for u in updates if u.direction == Direction.MEPHISTO_BOUND]
        if updates:
            own.append(
                {
                    **who,
                    "time": updates[0].created_at,
                    "event": "live",
                    "until": updates[-1].created_at,
                    "from_browser": len(from_browser),
                    "to_browser": len(updates) - len(from_browser),
                }
            )
        for start, seconds in silences(from_browser):
            own.append({**who, "time": start, "event": "silence", "seconds": seconds})
        own.extend({**who, **line} for line in connections.get(agent.agent_id, []))
        own.sort(key=lambda event: (event["time"], event["event"] != "registered"))
        events.extend(own)
    return events


async def timeline(database: Database, run: TaskRun, out: TextIO) -> None:
    for event in await agent_events(database, run):
        out.write(json.dumps(event, ensure_ascii=False) + "\n")
