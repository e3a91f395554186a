"""Browser tests' parts: Chromium and npm set-up, Playwright on its own loop, backend helpers.

Set-up works on a clean machine and fails loudly (never skips) when it cannot:

- `/usr/bin/chromium` is installed with apt-get when missing (never `playwright install`);
- the npm packages of package.json (mephisto-task 2.0.4, React 18) are installed into
  tests/browser/node_modules (ignored by git) when missing or at another version.

Threads: the Twisted reactor runs the daemon in the test's thread (pytest-twisted). Playwright
runs its async API on an asyncio loop in a thread of its own; a test hands it coroutines with
`browser.run(...)`, which returns a Deferred, so the reactor keeps serving the page meanwhile.

The router serves this folder as the task's static_dir: pages are at /pages/..., the npm
files at /node_modules/..., and our client at /architect.js (the router's own route).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from architect.config import Config
from tests import clients
from tests.daemon import Daemon, Daemons, daemon_config

reactor: Any = _reactor
T = TypeVar("T")

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
ARTIFACTS = HERE / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE = 10.0  # seconds for something that should happen soon
PAGE_TIMEOUT_MS = 15_000  # Playwright's own waits
CALL_TIMEOUT = 60.0  # seconds, any one call into the browser
DOC_VIEWPORT: Any = {"width": 1000, "height": 700}  # screenshots copied to docs/screenshots


def _fail_setup(what: str, result: subprocess.CompletedProcess[str] | None = None) -> NoReturn:
    detail = ""
    if result is not None:
        detail = f"\n--- exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    pytest.fail(f"browser test set-up: {what}{detail}", pytrace=False)


# --- Chromium ---


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        _fail_setup(f"{CHROMIUM} is missing and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in ([apt, "update"], [apt, "install", "-y", "chromium"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            _fail_setup(f"{' '.join(command)} failed", result)
    if not CHROMIUM.exists():
        _fail_setup(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


# --- npm packages ---


def wanted_packages() -> dict[str, str]:
    """name -> exact version, from tests/browser/package.json."""
    manifest = json.loads((HERE / "package.json").read_text())
    dependencies: dict[str, str] = manifest["dependencies"]
    return dependencies


def installed_version(name: str) -> str | None:
    manifest = NODE_MODULES / name / "package.json"
    if not manifest.is_file():
        return None
    version = json.loads(manifest.read_text()).get("version")
    return version if isinstance(version, str) else None


def ensure_npm_packages() -> None:
    wanted = wanted_packages()
    missing = [f"{n}@{v}" for n, v in wanted.items() if installed_version(n) != v]
    if not missing:
        return
    npm = shutil.which("npm")
    if npm is None:
        _fail_setup(f"npm is needed to install {', '.join(missing)} and is not on PATH")
    assert npm is not None
    command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(HERE)]
    result = subprocess.run(
        [*command, *(f"{n}@{v}" for n, v in wanted.items())],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        _fail_setup("npm install failed", result)
    still = [n for n, v in wanted.items() if installed_version(n) != v]
    if still:
        _fail_setup(f"npm install left these packages missing or at another version: {still}")


# --- Playwright on its own asyncio loop ---


class BrowserThread:
    """Playwright's async API on an asyncio loop in a thread; `run` bridges to Deferreds."""

    def __init__(self, executable: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="playwright", daemon=True)
        self.thread.start()
        self.executable = executable
        self._stop: Callable[[], Awaitable[None]] | None = None
        self.browser: Browser = self.wait(self._launch(), timeout=60)

    async def _launch(self) -> Browser:
        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(
            executable_path=str(self.executable), args=CHROMIUM_ARGS
        )

        async def stop() -> None:
            await browser.close()
            await playwright.stop()

        self._stop = stop
        return browser

    def _submit(self, awaitable: Awaitable[T]) -> Future[T]:
        async def wrapper() -> T:
            # Some Playwright calls (evaluate awaiting a page's Promise) have no timeout.
            return await asyncio.wait_for(awaitable, CALL_TIMEOUT)

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop)

    def wait(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Block until done: only for set-up and tear-down, never while a page needs the daemon."""
        return self._submit(awaitable).result(timeout)

    def run(self, awaitable: Awaitable[T]) -> Deferred[T]:
        """Run on the browser's loop; the Deferred fires in the reactor thread."""
        deferred: Deferred[T] = Deferred()

        def finished(future: Future[T]) -> None:
            error = future.exception()
            if error is not None:
                reactor.callFromThread(deferred.errback, error)
            else:
                reactor.callFromThread(deferred.callback, future.result())

        self._submit(awaitable).add_done_callback(finished)
        return deferred

    def close(self) -> None:
        if self._stop is not None:
            self.wait(self._stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@attrs.define
class PageHandle:
    """A page in a fresh browser context, and what its console said."""

    context: BrowserContext
    page: Page
    console: list[str]
    errors: list[str]


async def _open_page(browser: Browser, url: str) -> PageHandle:
    context = await browser.new_context(viewport={"width": 900, "height": 640})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = await context.new_page()
    handle = PageHandle(context, page, [], [])
    page.on("console", lambda message: handle.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: handle.errors.append(str(error)))
    await page.goto(url)
    return handle


class Pages:
    """Opens task pages of one test against one daemon; closes them at the end."""

    def __init__(self, thread: BrowserThread, port: int, test_name: str) -> None:
        self.thread = thread
        self.port = port
        self.test_name = test_name
        self.opened: list[PageHandle] = []

    def run(self, awaitable: Awaitable[T]) -> Deferred[T]:
        return self.thread.run(awaitable)

    def url(self, page: str, worker: str, assignment: str | int = "1", **extra: str | int) -> str:
        query = "&".join(
            f"{k}={v}"
            for k, v in {"worker_id": worker, "assignment_id": assignment, **extra}.items()
        )
        path = page if page.startswith("/") else f"/pages/{page}"  # tests/browser/pages/
        return f"http://127.0.0.1:{self.port}{path}?{query}"

    async def open(
        self, page: str, worker: str, assignment: str | int = "1", **extra: str | int
    ) -> PageHandle:
        url = self.url(page, worker, assignment, **extra)
        handle = await self.run(_open_page(self.thread.browser, url))
        self.opened.append(handle)
        return handle

    async def screenshot(self, handle: PageHandle, name: str) -> Path:
        path = ARTIFACTS / f"{self.test_name}-{name}.png"
        await self.run(handle.page.screenshot(path=str(path), full_page=True))
        return path

    async def doc_screenshot(self, handle: PageHandle, name: str) -> Path:
        """A screenshot for the README: the 1000x700 viewport, artifacts/docs-<name>.png."""
        path = ARTIFACTS / f"docs-{name}.png"
        await self.run(handle.page.set_viewport_size(DOC_VIEWPORT))
        await self.run(handle.page.screenshot(path=str(path)))
        return path

    async def close(self) -> None:
        for handle in self.opened:
            await self.run(handle.context.close())
        self.opened.clear()


# --- the backend's side ---


@attrs.frozen
class Submission:
    agent_id: str
    data: dict[str, Any]
    file_names: tuple[str, ...]  # the uploaded files' original names


async def stored_submissions(daemon: Daemon) -> list[Submission]:
    """The unit submissions the backend has stored, oldest first.

    The one place that knows how the backend stores them: adapt it when that changes.
    """
    stored = await daemon.database.list_submissions(kind="unit")
    return [Submission(s.agent_id, s.data, tuple(f.original_name for f in s.files)) for s in stored]


async def wait_for(condition: Callable[[], object], what: str, deadline: float = DEADLINE) -> None:
    await clients.wait_for(condition, what, deadline)


async def wait_for_submission(daemon: Daemon, agent_id: str) -> Submission:
    end = time.monotonic() + DEADLINE
    while True:
        found = [s for s in await stored_submissions(daemon) if s.agent_id == agent_id]
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > end:
            raise AssertionError(f"no submission stored for agent {agent_id}")
        await deferLater(reactor, 0.05)


# --- daemons running a task module ---


def write_task_module(folder: Path, source: str, name: str = "browser_task") -> Path:
    """A task module file, written the way a researcher writes one."""
    module = folder / f"{name}.py"
    module.write_text(textwrap.dedent(source))
    return module


def task_config_for(
    folder: Path,
    module_source: str,
    units: list[dict[str, Any]],
    router: dict[str, Any] | None = None,
    backend: dict[str, Any] | None = None,
    **task: Any,
) -> Config:
    """An embedded daemon's config serving tests/browser, running `module_source` over `units`."""
    folder.mkdir(parents=True, exist_ok=True)
    module = write_task_module(folder, module_source)
    return daemon_config(
        folder,
        router={
            "static_dir": HERE,
            "task_config": {"task_title": "Browser test task"},
            **(router or {}),
        },
        backend={"status_interval": 0.5, **(backend or {})},
        task={"name": "browser", "module": str(module), "units": tuple(units), **task},
    )


class Launcher:
    """Starts daemons (tests/daemon.py) and their pages for one test. `close` closes the
    pages; the daemons stop with `daemons` (the fixture of the same name)."""

    def __init__(
        self, thread: BrowserThread, daemons: Daemons, folder: Path, test_name: str
    ) -> None:
        self.thread = thread
        self.daemons = daemons
        self.folder = folder
        self.test_name = test_name
        self.pages: list[Pages] = []

    async def start(self, config: Config, ready: bool = True) -> Daemon:
        return await self.daemons.start(config, ready)

    async def stop(self, daemon: Daemon) -> None:
        await self.daemons.stop(daemon)

    async def task(
        self, module_source: str, units: list[dict[str, Any]], **settings: Any
    ) -> tuple[Daemon, Pages]:
        """An embedded daemon running the task module, and a Pages opener for it."""
        config = task_config_for(self.daemons.next_folder(), module_source, units, **settings)
        daemon = await self.start(config)
        return daemon, self.pages_for(daemon.port)

    def pages_for(self, port: int) -> Pages:
        pages = Pages(self.thread, port, self.test_name)
        self.pages.append(pages)
        return pages

    async def close(self) -> None:
        for pages in self.pages:
            await pages.close()


async def text_of(pages: Pages, handle: PageHandle, selector: str) -> str:
    await pages.run(handle.page.wait_for_selector(selector))
    text: str = await pages.run(handle.page.inner_text(selector))
    return text


async def wait_for_text(pages: Pages, handle: PageHandle, selector: str, text: str) -> None:
    """Until the element's text is exactly `text` (a clear error naming what was shown)."""
    try:
        await pages.run(
            handle.page.wait_for_function(
                "([s, t]) => document.querySelector(s)?.textContent === t",
                arg=[selector, text],
            )
        )
    except Exception as e:
        shown = await pages.run(handle.page.evaluate("document.body.innerText"))
        raise AssertionError(f"{selector} never showed {text!r}; the page shows:\n{shown}") from e
