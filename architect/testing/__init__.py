"""Testing a task with simulated workers: from pytest, from trial, and as a load run.

- `SimulatedWorker`: one page speaking the real protocol over HTTP and the WebSocket
  (worker.py); what the page sees is on it (`status`, `init_data`, `updates`).
- `TaskDaemon`: the daemon of an ini file in this process, on a free port with a
  temporary database (daemon.py); `await daemon.worker("alice")` opens a page.
- `TaskTestCase`, `DaemonMixin`: trial test cases that pytest runs too (trial.py);
  `architect.testing.fixtures.daemon_fixture` for pytest fixtures.
- the `bot(worker)` hook of a task module, which `architect bots` plays (bots.py).

docs/testing.md tells how to use them. (Needs treq: `pip install 'architect-router[testing]'`.)
"""

from architect.tasks.bot import BotError, Page, RemoteError, TaskEnded
from architect.testing.bots import Bot, bot_of
from architect.testing.daemon import TaskDaemon
from architect.testing.trial import DaemonMixin, TaskTestCase
from architect.testing.waits import WaitTimeout
from architect.testing.worker import (
    AgentView,
    Disruption,
    HttpError,
    NoAgent,
    SimulatedWorker,
    WorkerClosed,
)

__all__ = [
    "AgentView",
    "Bot",
    "BotError",
    "DaemonMixin",
    "Disruption",
    "HttpError",
    "NoAgent",
    "Page",
    "RemoteError",
    "SimulatedWorker",
    "TaskDaemon",
    "TaskEnded",
    "TaskTestCase",
    "WaitTimeout",
    "WorkerClosed",
    "bot_of",
]
