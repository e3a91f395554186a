"""The admin monitor page in Chromium, against a real embedded daemon: it watches an agent
register, go live (its socket open, heartbeating), disconnect and submit, updating without
a reload; its Expire and Block buttons act on the daemon."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from playwright.async_api import FilePayload

from architect.protocol import ALIVE, HEARTBEAT, Status
from architect.qualifications import BLOCKED
from tests.admin_support import ADMIN_TOKEN, register, submit, with_admin
from tests.browser.support import (
    ARTIFACTS,
    DOC_VIEWPORT,
    PAGE_TIMEOUT_MS,
    BrowserThread,
    PageHandle,
)
from tests.clients import Browser, wait_for
from tests.daemon import Daemon, Daemons, daemon_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest_twisted.async_yield_fixture
async def monitor(
    browser_thread: BrowserThread, daemons: Daemons
) -> AsyncIterator[tuple[Daemon, PageHandle]]:
    daemon = await daemons.start(
        with_admin(daemon_config(daemons.next_folder(), backend={"status_interval": 0.5}))
    )

    async def open_page() -> PageHandle:
        context = await browser_thread.browser.new_context(viewport=DOC_VIEWPORT)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = await context.new_page()
        handle = PageHandle(context, page, [], [])
        page.on("pageerror", lambda error: handle.errors.append(str(error)))
        await page.goto(f"{daemon.admin_url}/#token={ADMIN_TOKEN}")
        return handle

    handle = await browser_thread.run(open_page())
    try:
        yield daemon, handle
    finally:
        assert handle.errors == []
        await browser_thread.run(handle.context.close())


async def shows(
    thread: BrowserThread, handle: PageHandle, selector: str, text: str, what: str
) -> None:
    """Until the element's text is `text` (the page updates itself: no reload)."""
    script = "([s, t]) => document.querySelector(s)?.textContent === t"
    try:
        await thread.run(handle.page.wait_for_function(script, arg=[selector, text]))
    except Exception as e:
        shown = await thread.run(
            handle.page.evaluate("s => document.querySelector(s)?.textContent ?? null", selector)
        )
        raise AssertionError(f"{what}: {selector} shows {shown!r}, not {text!r}") from e


@pytest_twisted.ensureDeferred
async def test_the_monitor_watches_an_agent_from_registration_to_submission(
    browser_thread: BrowserThread, monitor: tuple[Daemon, PageHandle]
) -> None:
    daemon, handle = monitor
    thread = browser_thread
    await shows(thread, handle, '#units tr[data-status="available"] .count', "10", "units")
    # The token left the address bar once read.
    assert "token" not in await thread.run(handle.page.evaluate("location.href"))

    alice = Browser()
    agent_id = (await register(alice, daemon.url, "alice"))["agent_id"]
    row = f'#agents tr[data-agent-id="{agent_id}"]'
    await shows(thread, handle, f"{row} .worker", "alice", "registered")
    await shows(thread, handle, f"{row} .status", Status.IN_TASK, "registered")
    await shows(thread, handle, f"{row} .connected", "no", "no socket yet")
    await shows(thread, handle, '#units tr[data-status="available"] .count', "9", "reserved")

    socket = await alice.open_socket(daemon.port)
    socket.send(ALIVE, agent_id)
    socket.send(HEARTBEAT, agent_id)
    await shows(thread, handle, f"{row} .connected", "yes", "live")
    heartbeat = await thread.run(handle.page.inner_text(f"{row} .heartbeat"))
    assert heartbeat.endswith("s ago"), heartbeat

    await socket.close()
    await shows(thread, handle, f"{row} .connected", "no", "disconnected")

    code, _ = await submit(alice, daemon.url, agent_id, {"label": "positive"})
    assert code == 200
    await shows(thread, handle, f"{row} .status", Status.COMPLETED, "submitted")
    await shows(thread, handle, '#units tr[data-status="completed"] .count', "1", "completed")
    await shows(
        thread, handle, "#recent tr.event-submission .agent-id", agent_id, "recent submission"
    )
    await shows(thread, handle, "#recent tr.event-submission .details", "unit: stored", "stored")
    await shows(thread, handle, ".submission-legend", "submission: 1", "the plot's count")
    points = await thread.run(handle.page.get_attribute("#plot polyline.submission", "points"))
    assert points and len(points.split()) == 30  # five minutes in ten-second slices
    await thread.run(handle.page.screenshot(path=str(ARTIFACTS / "docs-monitor.png")))


@pytest_twisted.ensureDeferred
async def test_the_monitors_buttons_act_on_the_daemon(
    browser_thread: BrowserThread, monitor: tuple[Daemon, PageHandle]
) -> None:
    daemon, handle = monitor
    thread = browser_thread
    bob = Browser()
    agent_id = (await register(bob, daemon.url, "bob"))["agent_id"]
    row = f'#agents tr[data-agent-id="{agent_id}"]'
    await shows(thread, handle, f"{row} .status", Status.IN_TASK, "registered")
    await thread.run(handle.page.click(f"{row} button.expire"))
    await wait_for(lambda: daemon.has_status(agent_id, Status.EXPIRED), "bob's agent to expire")
    await shows(thread, handle, f"{row} .status", Status.EXPIRED, "expired")

    await thread.run(handle.page.fill("#worker-name", "mallory"))
    await thread.run(handle.page.click('#block-form button[data-action="block_worker"]'))

    async def blocked() -> bool:
        worker = await daemon.database.find_or_create_worker("mock", "mallory")
        return BLOCKED in await daemon.database.get_qualifications(worker.id)

    await wait_for(blocked, "mallory to be blocked")
    assert (await register(Browser(), daemon.url, "mallory"))["agent_id"] is None

    await thread.run(handle.page.fill("#allowed_concurrent", "2"))
    await thread.run(handle.page.click("#settings-form button"))
    await wait_for(lambda: daemon.pool.settings.allowed_concurrent == 2, "the new limit")

    more = [{"text": "added 1"}, {"text": "added 2"}, {"text": "added 3"}]
    lines = "".join(json.dumps(unit) + "\n" for unit in more).encode()
    file = FilePayload(name="more.jsonl", mimeType="application/json", buffer=lines)
    await thread.run(handle.page.set_input_files("#units-file", file))
    await thread.run(handle.page.click("#units-form button"))

    async def added() -> bool:
        units = await daemon.database.list_units(daemon.pool.task_run.id)
        return [u.assignment_data for u in units[-3:]] == more

    await wait_for(added, "the added units")
    available = (await daemon.database.count_units_by_status(daemon.pool.task_run.id))["available"]
    cell = '#units tr[data-status="available"] .count'
    await shows(thread, handle, cell, str(available), "the units added")
