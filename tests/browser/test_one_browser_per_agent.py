"""An agent belongs to the browser that registered it, in Chromium with the real pages.

Mallory opens Alice's page URL in another browser (a fresh browser context: its own
cookies and storage). With mephisto-task 2.0.4 she is refused, and told why; with
architect.js reading the URL itself (no provider globals: its own random id per tab)
she gets an agent of her own. Knowing Alice's
agent id, her page can neither open Alice's socket nor submit for her. Alice's reload
carries on with her conversation.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from architect.protocol import CloseCode, FailureReason, Status
from tests.browser.support import Launcher, PageHandle, Pages, text_of, wait_for_text
from tests.browser.tasks import ECHO_TASK
from tests.browser.test_live_chat import agent_id_of, send, wait_for_messages

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Run in a page: what the router does with a socket of this page speaking for `agentId`,
# and with a submission for it.
IMPERSONATE = """
async (agentId) => {
  const closed = await new Promise((resolve) => {
    const socket = new WebSocket("ws://" + location.host + "/");
    socket.onopen = () => socket.send(JSON.stringify(
      { packet_type: "alive", subject_id: agentId, data: {}, client_timestamp: 0 }));
    socket.onclose = (event) => resolve(event.code);
  });
  const submitted = await fetch("/submit_task", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ USED_AGENT_ID: agentId, final_data: { answer: "not mine" } }),
  });
  return [closed, submitted.status];
}
"""


async def impersonate(pages: Pages, handle: PageHandle, agent_id: str) -> list[int]:
    outcome: list[int] = await pages.run(handle.page.evaluate(IMPERSONATE, agent_id))
    return outcome


@pytest_twisted.ensureDeferred
async def test_another_browser_with_the_same_url_is_refused_on_mephisto_task(
    launcher: Launcher,
) -> None:
    daemon, pages = await launcher.task(ECHO_TASK, [{"n": 1}, {"n": 2}])
    alice = await pages.open("mephisto_live.html", "alice")
    await wait_for_text(pages, alice, "#connection", "connected")
    agent_id = await agent_id_of(pages, alice)
    # The task greets once it runs, which may come after the socket connected: wait for it,
    # or "hello" is shown first (the order of the conversation is what is checked below).
    await wait_for_messages(pages, alice, ["Say something."])
    await send(pages, alice, "hello")
    await wait_for_messages(pages, alice, ["Say something.", "hello", "echo: hello"])

    mallory = await pages.open("mephisto_live.html", "alice")  # the same URL
    assert await text_of(pages, mallory, "#blocked") == FailureReason.OTHER_BROWSER
    assert agent_id not in await pages.run(mallory.page.content())
    assert await impersonate(pages, mallory, agent_id) == [CloseCode.NOT_YOURS, 403]
    assert await daemon.database.list_submissions(agent_id=agent_id) == []

    # Alice's own browser: a reload gets her agent and conversation back.
    await pages.run(alice.page.reload())
    await wait_for_text(pages, alice, "#connection", "connected")
    assert await agent_id_of(pages, alice) == agent_id
    await send(pages, alice, "still me")
    history = ["Say something.", "hello", "echo: hello", "still me", "echo: still me"]
    await wait_for_messages(pages, alice, history)
    assert daemon.agent(agent_id).status == Status.IN_TASK
    for handle in (alice, mallory):
        assert handle.errors == [], handle.errors


@pytest_twisted.ensureDeferred
async def test_architect_js_gives_each_tab_its_own_agent(launcher: Launcher) -> None:
    daemon, pages = await launcher.task(ECHO_TASK, [{"n": 1}, {"n": 2}, {"n": 3}])
    alice = await pages.open("architect_live.html", "alice", provider="none")
    await wait_for_text(pages, alice, "#connection", "connected")
    agent_id = await agent_id_of(pages, alice)

    # Another browser with the same URL: an agent of its own, and none of Alice's.
    mallory = await pages.open("architect_live.html", "alice", provider="none")
    await wait_for_text(pages, mallory, "#connection", "connected")
    assert await agent_id_of(pages, mallory) != agent_id
    assert await impersonate(pages, mallory, agent_id) == [CloseCode.NOT_YOURS, 403]

    # A second tab of Alice's browser: its own agent too, both live at once.
    tab = PageHandle(alice.context, await pages.run(alice.context.new_page()), [], [])
    await pages.run(tab.page.goto(alice.page.url))
    await wait_for_text(pages, tab, "#connection", "connected")
    second = await agent_id_of(pages, tab)
    assert second not in (agent_id, await agent_id_of(pages, mallory))
    await send(pages, tab, "from tab two")
    await wait_for_messages(pages, tab, ["Say something.", "from tab two", "echo: from tab two"])

    # The first tab's reload keeps its agent (its id is in the tab's sessionStorage).
    await pages.run(alice.page.reload())
    await wait_for_text(pages, alice, "#connection", "connected")
    assert await agent_id_of(pages, alice) == agent_id
    assert daemon.agent(agent_id).status == Status.IN_TASK
    for handle in (alice, mallory, tab):
        assert handle.errors == [], handle.errors
