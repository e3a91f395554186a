"""A live two-worker chat in two browser contexts, on mephisto-task 2.0.4 and architect.js.

The task module relays each message to the partner. One worker waits until the second
comes; messages go both ways; statuses are shown; when one closes the page the other
sees `partner disconnect`.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from architect.protocol import Status
from tests.browser.support import (
    Launcher,
    PageHandle,
    Pages,
    wait_for,
    wait_for_text,
)
from tests.browser.tasks import CHAT_TASK

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def shown_messages(pages: Pages, handle: PageHandle) -> list[str]:
    texts: list[str] = await pages.run(handle.page.locator("#messages li").all_inner_texts())
    return texts


async def wait_for_messages(pages: Pages, handle: PageHandle, wanted: list[str]) -> None:
    try:
        await pages.run(
            handle.page.wait_for_function(
                "wanted => JSON.stringify([...document.querySelectorAll('#messages li')]"
                ".map(li => li.textContent)) === JSON.stringify(wanted)",
                arg=wanted,
            )
        )
    except Exception as e:
        raise AssertionError(f"wanted {wanted}, shown {await shown_messages(pages, handle)}") from e


async def send(pages: Pages, handle: PageHandle, text: str) -> None:
    await pages.run(handle.page.fill("#message", text))
    await pages.run(handle.page.click("#send"))


async def agent_id_of(pages: Pages, handle: PageHandle) -> str:
    if "architect" in handle.page.url:
        agent_id = await pages.run(handle.page.evaluate("window.task.ready.then(t => t.agentId)"))
    else:
        await pages.run(handle.page.wait_for_selector("#task"))
        agent_id = await pages.run(handle.page.get_attribute("#task", "data-agent-id"))
    assert isinstance(agent_id, str) and agent_id
    return agent_id


async def chat(pages: Pages, page: str) -> tuple[PageHandle, PageHandle]:
    """Alice opens `page` and waits for a partner; bob comes; they say hello to each other
    in the blue room (CHAT_TASK). Their pages."""
    alice = await pages.open(page, "alice")
    await wait_for_text(pages, alice, "#status", Status.WAITING)
    assert await shown_messages(pages, alice) == []

    bob = await pages.open(page, "bob")
    for handle in (alice, bob):
        await wait_for_text(pages, handle, "#status", Status.IN_TASK)
        await wait_for_text(pages, handle, "#connection", "connected")
        await wait_for_messages(pages, handle, ["Welcome to the blue room"])

    await send(pages, alice, "hello bob")
    await wait_for_messages(pages, bob, ["Welcome to the blue room", "hello bob"])
    await send(pages, bob, "hi alice")
    await wait_for_messages(pages, alice, ["Welcome to the blue room", "hello bob", "hi alice"])
    await wait_for_messages(pages, bob, ["Welcome to the blue room", "hello bob", "hi alice"])
    return alice, bob


@pytest.mark.parametrize("page", ["mephisto_live.html", "architect_live.html"])
@pytest_twisted.ensureDeferred
async def test_two_workers_chat_then_one_leaves(launcher: Launcher, page: str) -> None:
    daemon, pages = await launcher.task(
        CHAT_TASK,
        [{"room": "the blue room", "text": "Chat with your partner: say hello."}],
        units_per_assignment=2,
        router={"disconnect_grace": 1.0},
    )
    alice, bob = await chat(pages, page)
    await pages.screenshot(alice, "chat")
    if page.startswith("mephisto"):
        await pages.doc_screenshot(alice, "live-chat")

    # Bob closes his page: after the grace period he is disconnect, alice is told.
    alice_id, bob_id = await agent_id_of(pages, alice), await agent_id_of(pages, bob)
    pages.opened.remove(bob)
    await pages.run(bob.context.close())
    await wait_for_text(pages, alice, "#status", Status.PARTNER_DISCONNECT)
    assert await daemon.status(bob_id) == Status.DISCONNECT
    await wait_for(lambda: daemon.has_status(alice_id, Status.PARTNER_DISCONNECT), "pd")
    await pages.screenshot(alice, "partner-left")
    assert alice.errors == [] and bob.errors == []
