"""Fixtures of the browser tests; see support.py for how set-up and threads work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from tests.browser.support import (
    ARTIFACTS,
    HERE,
    BrowserThread,
    Launcher,
    Pages,
    ensure_chromium,
    ensure_npm_packages,
)
from tests.daemon import Daemon, Daemons


@pytest.fixture(scope="session")
def browser_thread() -> Iterator[BrowserThread]:
    executable = ensure_chromium()
    ensure_npm_packages()
    ARTIFACTS.mkdir(exist_ok=True)
    thread = BrowserThread(executable)
    try:
        yield thread
    finally:
        thread.close()


@pytest_twisted.async_fixture
async def daemon(daemons: Daemons) -> Daemon:
    """The embedded daemon (router + backend, demo units) serving tests/browser as static_dir."""
    return await daemons.embedded(
        router={"static_dir": HERE, "task_config": {"task_title": "Browser test task"}},
        backend={"status_interval": 0.5},
    )


@pytest_twisted.async_yield_fixture
async def pages(
    browser_thread: BrowserThread, daemon: Daemon, request: pytest.FixtureRequest
) -> AsyncIterator[Pages]:
    opened = Pages(browser_thread, daemon.port, request.node.name)
    try:
        yield opened
    finally:
        await opened.close()


@pytest_twisted.async_yield_fixture
async def launcher(
    browser_thread: BrowserThread,
    daemons: Daemons,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Launcher]:
    """Daemons running task modules (see support.Launcher); their pages are closed first,
    then the daemons stop (the `daemons` fixture)."""
    launched = Launcher(browser_thread, daemons, tmp_path, request.node.name)
    try:
        yield launched
    finally:
        await launched.close()
