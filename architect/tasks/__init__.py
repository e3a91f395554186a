"""What a task module's author imports: everything a hook is handed or may use.

    from architect.tasks import Agent, AgentGone, Assignment, Status, in_reactor

docs/tasks.md describes each. Nothing else under `architect` is meant for task code. A
task's `bot` hook gets a `Page` and may raise `BotError` (docs/testing.md).
"""

from architect.protocol import Status
from architect.tasks.agent import Agent, AgentGone
from architect.tasks.bot import BotError, Page, RemoteError, TaskEnded
from architect.tasks.definition import LIVE, REMOTE_PROCEDURE, STATIC, UnitInfo, WorkerInfo
from architect.tasks.hooks import in_reactor
from architect.tasks.live import Assignment

__all__ = [
    "LIVE",
    "REMOTE_PROCEDURE",
    "STATIC",
    "Agent",
    "AgentGone",
    "Assignment",
    "BotError",
    "Page",
    "RemoteError",
    "Status",
    "TaskEnded",
    "UnitInfo",
    "WorkerInfo",
    "in_reactor",
]
