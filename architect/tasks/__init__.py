"""What a task module's author imports: everything a hook is handed or may use.

    from architect.tasks import Agent, AgentGone, Assignment, Status, in_reactor

docs/tasks.md describes each. Nothing else under `architect` is meant for task code.
"""

from architect.protocol import Status
from architect.tasks.agent import Agent, AgentGone
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
    "Status",
    "UnitInfo",
    "WorkerInfo",
    "in_reactor",
]
