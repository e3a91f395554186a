"""Live traffic through architect.js in a real browser, against the embedded daemon.

The task code's side is driven by hand through the backend's Agent (act/observe).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from architect.protocol import Status
from architect.tasks.agent import Agent
from tests.browser.support import (
    DEADLINE,
    PageHandle,
    Pages,
    reactor,
    wait_for_submission,
)
from tests.daemon import Daemon

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def live_page(pages: Pages, worker: str, **extra: str | int) -> tuple[PageHandle, str]:
    handle = await pages.open("architect_live.html", worker, **extra)
    await pages.run(
        handle.page.wait_for_function("document.querySelector('#status').textContent === 'in task'")
    )
    await pages.run(handle.page.wait_for_function("window.task.connection === 'connected'"))
    agent_id = await pages.run(handle.page.evaluate("window.task.agentId"))
    assert isinstance(agent_id, str) and agent_id
    return handle, agent_id


async def messages(pages: Pages, handle: PageHandle) -> list[str]:
    texts: list[str] = await pages.run(handle.page.locator("#messages li").all_inner_texts())
    return texts


async def wait_for_message(pages: Pages, handle: PageHandle, text: str) -> None:
    await pages.run(
        handle.page.wait_for_function(
            "text => [...document.querySelectorAll('#messages li')]"
            ".some(li => li.textContent === text)",
            arg=text,
        )
    )


async def send_from_page(pages: Pages, handle: PageHandle, text: str) -> None:
    await pages.run(handle.page.fill("#message", text))
    await pages.run(handle.page.click("#send"))


async def take(agent: Agent) -> dict[str, Any]:
    update = await agent.act(DEADLINE)
    assert update is not None, "no live update reached the task code"
    return update


@pytest_twisted.ensureDeferred
async def test_live_updates_both_ways(pages: Pages, daemon: Daemon) -> None:
    handle, agent_id = await live_page(pages, "alice")
    agent = daemon.agent(agent_id)
    assert agent.status == Status.IN_TASK

    await send_from_page(pages, handle, "hello from the page")
    got = await take(agent)
    assert got["text"] == "hello from the page" and got["update_id"]

    agent.observe({"text": "hello from the task", "from": "task"})
    await wait_for_message(pages, handle, "hello from the task")
    await pages.screenshot(handle, "chat")

    # A reload replays the conversation from init_task_data.past_live_updates.
    await pages.run(handle.page.reload())
    await wait_for_message(pages, handle, "hello from the task")
    assert await messages(pages, handle) == ["hello from the page", "hello from the task"]
    await pages.run(handle.page.wait_for_function("window.task.connection === 'connected'"))

    # The socket carries on after the reload, without repeating replayed updates.
    agent.observe({"text": "after the reload", "from": "task"})
    await wait_for_message(pages, handle, "after the reload")
    await deferLater(reactor, 0.3)
    assert await messages(pages, handle) == [
        "hello from the page",
        "hello from the task",
        "after the reload",
    ]
    assert handle.errors == []


@pytest_twisted.ensureDeferred
async def test_reconnection_after_going_offline(pages: Pages, daemon: Daemon) -> None:
    # Fast heartbeats so a silent socket is noticed within seconds.
    handle, agent_id = await live_page(
        pages, "bob", heartbeat_ms=500, missed_heartbeats=2, reconnect_max_ms=1000
    )
    agent = daemon.agent(agent_id)
    await send_from_page(pages, handle, "before")
    assert (await take(agent))["text"] == "before"

    await pages.run(handle.context.set_offline(True))
    await pages.run(
        handle.page.wait_for_function("window.task.connection === 'reconnecting'", timeout=10_000)
    )
    # Both sides keep talking while the page is away.
    agent.observe({"text": "sent while offline", "from": "task"})
    await pages.run(handle.page.evaluate("void window.task.sendLiveUpdate({text: 'queued 1'})"))
    await pages.run(handle.page.evaluate("void window.task.sendLiveUpdate({text: 'queued 2'})"))
    await deferLater(reactor, 3.0)
    assert agent.status == Status.IN_TASK  # back within the grace period
    await pages.screenshot(handle, "offline")

    await pages.run(handle.context.set_offline(False))
    await pages.run(handle.page.wait_for_function("window.task.connection === 'connected'"))
    await wait_for_message(pages, handle, "sent while offline")

    # The queued updates arrive once each, in order.
    assert [(await take(agent))["text"] for _ in range(2)] == ["queued 1", "queued 2"]
    assert await agent.act(1.0) is None

    # Live traffic resumes both ways, nothing shown twice.
    agent.observe({"text": "after", "from": "task"})
    await wait_for_message(pages, handle, "after")
    await send_from_page(pages, handle, "page after")
    assert (await take(agent))["text"] == "page after"
    shown = await messages(pages, handle)
    assert shown.count("sent while offline") == 1, shown
    assert shown.count("after") == 1, shown
    history = await pages.run(handle.page.evaluate("window.connectionHistory"))
    assert "reconnecting" in history
    await pages.screenshot(handle, "back")


@pytest_twisted.ensureDeferred
async def test_remote_calls_resolve_and_reject(pages: Pages, daemon: Daemon) -> None:
    handle, agent_id = await live_page(pages, "carol")
    agent = daemon.agent(agent_id)
    page = handle.page

    await pages.run(
        page.evaluate(
            "window.calls = {};"
            "window.task.callRemote('add', {a: 2, b: 3}).then("
            "  r => window.calls.add = {ok: r}, e => window.calls.add = {err: e.message});"
            "window.task.callRemote('boom', [1]).then("
            "  r => window.calls.boom = {ok: r}, e => window.calls.boom = {err: e.message});"
            "window.task.callRemote('silent', null, {timeout: 500}).then("
            "  r => window.calls.silent = {ok: r}, e => window.calls.silent = {err: e.name});"
        )
    )
    requests = {}
    for _ in range(3):
        request = await take(agent)
        requests[request["target"]] = request
    assert json.loads(requests["add"]["args"]) == {"a": 2, "b": 3}
    assert json.loads(requests["boom"]["args"]) == [1]

    agent.observe({"handles": requests["add"]["request_id"], "response": json.dumps({"sum": 5})})
    agent.observe({"handles": requests["boom"]["request_id"], "error": "boom failed: ValueError"})
    await pages.run(page.wait_for_function("Object.keys(window.calls).length === 3"))
    calls = await pages.run(page.evaluate("window.calls"))
    assert calls == {
        "add": {"ok": {"sum": 5}},
        "boom": {"err": "boom failed: ValueError"},
        "silent": {"err": "RemoteError"},
    }
    # Answers to calls are not shown as chat messages.
    assert await messages(pages, handle) == []


@pytest_twisted.ensureDeferred
async def test_a_submission_with_files(pages: Pages, daemon: Daemon) -> None:
    handle, agent_id = await live_page(pages, "dave")
    answer = await pages.run(
        handle.page.evaluate(
            "window.task.submit({rating: 4}, ["
            "  new File(['hello file'], 'note.txt', {type: 'text/plain'})])"
        )
    )
    assert answer == {"status": "Submitted!"}
    stored = await wait_for_submission(daemon, agent_id)
    assert stored.data["rating"] == 4
    assert stored.file_names == ("note.txt",)
    [described] = stored.data["files"]
    assert described["originalname"] == "note.txt"
    assert described["size"] == len("hello file")
    await pages.run(handle.page.wait_for_function("window.task.status === 'completed'"))
