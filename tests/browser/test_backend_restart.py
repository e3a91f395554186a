"""The backend restarts (remote mode) while a live task runs in a real browser.

The router runs alone; the backend is a separate service connecting to it over its
WebSocket, with the same data folder. It is stopped mid-task and a new one is started
with the same config.

What the backend guarantees today: the page keeps its state and its socket (the router
stays up), nothing crashes, and the service carries on with new work. It does not carry a
live assignment across its own restart: `run_assignment` lived in the old process, and the
new one marks that run's working agents `disconnect` and puts their units back in the pool
(storage semantics). So the open page is told `disconnect` (the new backend does not hold
the agents the router still shows as working), a reload is refused with the task-missing
text, and a new worker gets the freed unit.
"""

from __future__ import annotations

import attrs
import pytest
import pytest_twisted
from twisted.internet.task import deferLater

from architect.protocol import FailureReason, Status
from tests.browser.support import (
    Launcher,
    reactor,
    router_port,
    task_config_for,
    text_of,
    wait_for_text,
)
from tests.browser.tasks import ECHO_TASK
from tests.browser.test_live_chat import send, shown_messages, wait_for_messages

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize("page", ["mephisto_live.html", "architect_live.html"])
@pytest_twisted.ensureDeferred
async def test_backend_restart_during_a_live_task(launcher: Launcher, page: str) -> None:
    config = task_config_for(launcher.folder, ECHO_TASK, [{"n": 1}])
    router = await launcher.start(
        attrs.evolve(config, backend=attrs.evolve(config.backend, mode="off")), ready=False
    )
    port = router_port(router)
    remote = attrs.evolve(
        config,
        backend=attrs.evolve(config.backend, mode="remote", router_url=f"ws://127.0.0.1:{port}/"),
    )
    backend = await launcher.start(remote)
    pages = launcher.pages_for(port)
    handle = await pages.open(page, "alice")
    await wait_for_text(pages, handle, "#status", Status.IN_TASK)
    await wait_for_text(pages, handle, "#connection", "connected")
    await send(pages, handle, "before")
    conversation = ["Say something.", "before", "echo: before"]
    await wait_for_messages(pages, handle, conversation)

    await launcher.stop(backend)
    await deferLater(reactor, 1.0)
    await send(pages, handle, "while the backend is away")
    backend = await launcher.start(remote)
    # The new backend learns from the router's statuses that the agent is not its own,
    # and tells the page it is disconnected rather than leaving it "in task" forever.
    await wait_for_text(pages, handle, "#status", Status.DISCONNECT)

    # The page keeps what it had and its socket; nothing broke in it.
    assert await shown_messages(pages, handle) == [*conversation, "while the backend is away"]
    assert await text_of(pages, handle, "#connection") == "connected"
    assert handle.errors == []
    await pages.screenshot(handle, "after-restart")

    # The new backend took the agent as disconnect: a reload is refused, clearly.
    database = backend.database
    assert database is not None
    [stored] = await database.list_agents()
    assert stored.status == Status.DISCONNECT
    if page.startswith("mephisto"):
        await pages.run(handle.page.reload())
        assert await text_of(pages, handle, "#blocked") == FailureReason.TASK_MISSING
    else:
        await pages.run(handle.page.reload())
        reason = await pages.run(
            handle.page.evaluate("window.task.ready.then(t => t.failureReason)")
        )
        assert reason == FailureReason.TASK_MISSING

    # The service carries on: the unit is back in the pool and a new worker does it live.
    bob = await pages.open(page, "bob")
    await wait_for_text(pages, bob, "#status", Status.IN_TASK)
    await wait_for_text(pages, bob, "#connection", "connected")
    await send(pages, bob, "hello again")
    await wait_for_messages(pages, bob, ["Say something.", "hello again", "echo: hello again"])
    assert bob.errors == []
