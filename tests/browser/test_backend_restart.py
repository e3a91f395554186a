"""The backend restarts (remote mode) while a live task runs in a real browser.

The router runs alone; the backend is a separate service connecting to it over its
WebSocket, with the same data folder. It is stopped mid-task and a new one is started
with the same config. The page keeps its state and its socket (the router stays up);
the new backend takes the agent back from the database (its data and live updates),
learns from the router that the page is still there, and runs the live assignment
again (`assignment.resumed`: the task does not greet twice). What the page sent while
the backend was away waits at the router and is answered; nothing is lost or doubled,
and a reload shows the whole conversation.
"""

from __future__ import annotations

import attrs
import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from architect.config import Config
from architect.protocol import Status
from architect.storage import UnitStatus
from tests.browser.support import (
    Launcher,
    reactor,
    task_config_for,
    text_of,
    wait_for_submission,
    wait_for_text,
)
from tests.browser.tasks import CHAT_TASK, ECHO_TASK
from tests.browser.test_live_chat import agent_id_of, send, shown_messages, wait_for_messages
from tests.clients import wait_for
from tests.daemon import Daemon

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def router_and_remote_backend(
    launcher: Launcher, config: Config
) -> tuple[int, Config, Daemon]:
    """A router alone (mode off) and a backend connecting to it (mode remote), one config:
    (the router's port, the backend's config, the backend)."""
    token = "restart-test-token"
    router_side = attrs.evolve(config.router, backend_token=token)
    router = await launcher.start(
        attrs.evolve(config, router=router_side, backend=attrs.evolve(config.backend, mode="off")),
        ready=False,
    )
    backend_side = attrs.evolve(
        config.backend, mode="remote", router_url=router.ws_url, backend_token=token
    )
    remote = attrs.evolve(config, backend=backend_side)
    backend = await launcher.start(remote)
    # Started is not linked: a page that registers before the link is up is answered 503
    # (no backend), which mephisto-task does not retry.
    await wait_for(lambda: router.hub.backend is not None, "the backend's link to the router")
    return router.port, remote, backend


@pytest.mark.parametrize("page", ["mephisto_live.html", "architect_live.html"])
@pytest_twisted.ensureDeferred
async def test_backend_restart_during_a_live_task(launcher: Launcher, page: str) -> None:
    config = task_config_for(launcher.folder, ECHO_TASK, [{"n": 1}])
    port, remote, backend = await router_and_remote_backend(launcher, config)
    pages = launcher.pages_for(port)
    handle = await pages.open(page, "alice")
    await wait_for_text(pages, handle, "#status", Status.IN_TASK)
    await wait_for_text(pages, handle, "#connection", "connected")
    agent_id = await agent_id_of(pages, handle)
    await send(pages, handle, "before")
    conversation = ["Say something.", "before", "echo: before"]
    await wait_for_messages(pages, handle, conversation)

    await launcher.stop(backend)
    await deferLater(reactor, 1.0)
    await send(pages, handle, "while the backend is away")  # waits at the router
    backend = await launcher.start(remote)

    # The new backend carries the agent on: the waiting message is answered, then more.
    away = ["while the backend is away", "echo: while the backend is away"]
    await wait_for_messages(pages, handle, [*conversation, *away])
    await send(pages, handle, "after")
    conversation = [*conversation, *away, "after", "echo: after"]
    await wait_for_messages(pages, handle, conversation)
    await deferLater(reactor, 0.3)  # time for anything doubled to show
    assert await shown_messages(pages, handle) == conversation
    assert await text_of(pages, handle, "#status") == Status.IN_TASK
    assert await text_of(pages, handle, "#connection") == "connected"
    assert handle.errors == []
    await pages.screenshot(handle, "after-restart")

    # The new backend holds the agent and its unit, with the whole log.
    database = backend.database
    assert database is not None
    [stored] = await database.list_agents()
    assert stored.agent_id == agent_id and stored.status == Status.IN_TASK
    [unit] = await database.list_units(stored.task_run_id)
    assert unit.status == UnitStatus.RESERVED and unit.agent_id == agent_id
    logged = [u.data.get("text") for u in await database.live_updates(agent_id)]
    assert logged == conversation

    # A reload (served by the new backend) shows the whole conversation, once, in order.
    await pages.run(handle.page.reload())
    await wait_for_text(pages, handle, "#connection", "connected")
    await wait_for_messages(pages, handle, conversation)
    assert await shown_messages(pages, handle) == conversation
    assert await text_of(pages, handle, "#status") == Status.IN_TASK

    # And the worker finishes the task: the submission reaches the new backend.
    submit = (
        "window.liveTask.handleSubmit({answer: 'done'})"
        if page.startswith("mephisto")
        else "window.task.ready.then(t => t.submit({answer: 'done'}))"
    )
    await pages.run(handle.page.evaluate(submit))
    submission = await wait_for_submission(backend, agent_id)
    assert submission.data == {"answer": "done"}
    assert handle.errors == []


@pytest_twisted.ensureDeferred
async def test_two_workers_keep_chatting_across_a_backend_restart(launcher: Launcher) -> None:
    """The room is taken back with both its agents and runs again (no second welcome)."""
    room = {"room": "the blue room", "text": "Chat with your partner: say hello."}
    config = task_config_for(launcher.folder, CHAT_TASK, [room], units_per_assignment=2)
    port, remote, backend = await router_and_remote_backend(launcher, config)
    pages = launcher.pages_for(port)
    alice = await pages.open("mephisto_live.html", "alice")
    bob = await pages.open("architect_live.html", "bob")  # one page of each client
    welcome = ["Welcome to the blue room"]
    for handle in (alice, bob):
        await wait_for_text(pages, handle, "#status", Status.IN_TASK)
        await wait_for_text(pages, handle, "#connection", "connected")
        await wait_for_messages(pages, handle, welcome)
    await send(pages, alice, "hello bob")
    await wait_for_messages(pages, bob, [*welcome, "hello bob"])

    await launcher.stop(backend)
    backend = await launcher.start(remote)
    await send(pages, bob, "hi alice, after the restart")
    conversation = [*welcome, "hello bob", "hi alice, after the restart"]
    await wait_for_messages(pages, alice, conversation)
    await send(pages, alice, "still here")
    conversation = [*conversation, "still here"]
    await wait_for_messages(pages, bob, conversation)
    await deferLater(reactor, 0.3)  # time for a second welcome, or anything doubled, to show
    for handle in (alice, bob):
        assert await shown_messages(pages, handle) == conversation
        assert await text_of(pages, handle, "#status") == Status.IN_TASK
        assert handle.errors == []
