"""A pytest fixture of a daemon (with pytest-twisted):

    from architect.testing.fixtures import daemon_fixture

    daemon = daemon_fixture(Path(__file__).parent / "router.ini")

    @pytest_twisted.ensureDeferred
    async def test_a_bot_completes(daemon):
        worker = await daemon.play("alice")
        ...

Each test using it gets the daemon of that ini started in a fresh temporary folder, on a
free port, and stopped when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from architect.config import Config
from architect.testing.daemon import TaskDaemon


def daemon_fixture(config: str | Path | Config, *, scope: str = "function", **options: Any) -> Any:
    """A pytest fixture giving a started TaskDaemon of `config`; `options` go to
    TaskDaemon (router=, backend=, task= overrides...)."""
    import pytest_twisted  # only the pytest side needs it

    @pytest_twisted.async_yield_fixture(scope=scope)
    async def daemon() -> AsyncIterator[TaskDaemon]:
        async with TaskDaemon(config, **options) as running:
            yield running

    return daemon
