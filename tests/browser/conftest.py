"""Fixtures of the browser tests; see support.py for how set-up and threads work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from architect.config import BackendConfig, Config, RouterConfig, StorageConfig
from architect.tap import ArchitectService, build_service
from tests.browser.support import (
    ARTIFACTS,
    HERE,
    BrowserThread,
    Launcher,
    Pages,
    ensure_chromium,
    ensure_npm_packages,
    free_port,
    reactor,
)


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


@pytest_twisted.async_yield_fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[ArchitectService, int]]:
    """The embedded daemon (router + backend, demo units) serving tests/browser as static_dir."""
    port = await free_port()
    config = Config(
        path=tmp_path / "router.ini",
        router=RouterConfig(
            listen=f"tcp:{port}:interface=127.0.0.1",
            static_dir=HERE,
            task_config={"task_title": "Browser test task"},
            upload_dir=tmp_path / "uploads",
        ),
        backend=BackendConfig(mode="embedded", status_interval=0.5),
        storage=StorageConfig(data_dir=tmp_path / "data"),
    )
    service = build_service(config, reactor)
    service.startService()
    await service.when_ready()
    try:
        yield service, port
    finally:
        await service.stopService()


@pytest_twisted.async_yield_fixture
async def pages(
    browser_thread: BrowserThread,
    daemon: tuple[ArchitectService, int],
    request: pytest.FixtureRequest,
) -> AsyncIterator[Pages]:
    opened = Pages(browser_thread, daemon[1], request.node.name)
    try:
        yield opened
    finally:
        await opened.close()


@pytest_twisted.async_yield_fixture
async def launcher(
    browser_thread: BrowserThread, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Launcher]:
    """Daemons running task modules (see support.Launcher), stopped with their pages."""
    launched = Launcher(browser_thread, tmp_path, request.node.name)
    try:
        yield launched
    finally:
        await launched.close()
