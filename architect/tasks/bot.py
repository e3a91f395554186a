"""What a task module's `bot(worker)` hook is handed and may raise (pure: no transport).

The daemon never calls `bot`: tests and `architect bots` do, with a simulated worker
(`architect.testing.SimulatedWorker`, which this `Page` describes), so a task module
names these from `architect.tasks` and needs no test tool at import.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Protocol


class BotError(Exception):
    """A bot could not play its task the way it expected (the message says how)."""


class TaskEnded(Exception):
    """The agent is no longer working (its status is final): what was awaited will not come."""

    def __init__(self, worker: str, status: str | None) -> None:
        super().__init__(f"{worker}: the agent is {status!r}: no more live updates will come")
        self.status = status


class RemoteError(Exception):
    """A remote procedure call the task answered with an error."""

    def __init__(self, message: str, target: str, details: Any) -> None:
        super().__init__(message)
        self.target = target
        self.details = details


class Page(Protocol):
    """A simulated worker's page, as a bot uses it (docs/testing.md has each call)."""

    name: str
    random: random.Random

    @property
    def agent_id(self) -> str | None: ...
    @property
    def status(self) -> str | None: ...
    @property
    def init_data(self) -> Any: ...
    @property
    def updates(self) -> list[dict[str, Any]]: ...
    @property
    def is_refused(self) -> bool: ...
    @property
    def is_onboarding(self) -> bool: ...

    async def submit_onboarding(self, data: dict[str, Any]) -> dict[str, Any]: ...
    async def submit(
        self, data: dict[str, Any], files: Mapping[str, tuple[str, bytes, str]] | None = None
    ) -> Any: ...
    async def connect(self) -> None: ...
    async def send(self, data: dict[str, Any], pause: bool = True) -> str: ...
    async def next_update(self, timeout: float | None = None) -> dict[str, Any]: ...
    async def ask(self, data: dict[str, Any], timeout: float | None = None) -> dict[str, Any]: ...
    async def call(self, target: str, args: Any = None, timeout: float | None = None) -> Any: ...
    async def wait_for_status(self, *wanted: str, timeout: float | None = None) -> str: ...
    async def pause(self) -> None: ...
    def note_timing(self, what: str, seconds: float) -> None: ...
