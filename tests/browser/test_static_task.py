"""A static task in a real browser: load, see the unit's text, submit, find it stored.

Once with the real mephisto-task 2.0.4 (useMephistoTask), once with our architect.js.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from architect.protocol import Status
from tests.browser.support import (
    DEADLINE,
    Pages,
    wait_for,
    wait_for_submission,
)
from tests.daemon import Daemon

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.parametrize(
    ("page", "done_selector"),
    [
        ("mephisto_static.html", "#provider-submitted"),
        ("architect_static.html", "#submitted"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_static_task_is_submitted_and_stored(
    pages: Pages, daemon: Daemon, page: str, done_selector: str
) -> None:
    handle = await pages.open(page, "alice")
    browser = handle.page

    await pages.run(browser.wait_for_selector("#unit-text"))
    text = await pages.run(browser.inner_text("#unit-text"))
    assert text.startswith("Demo unit 1 of 10")
    agent_id = await pages.run(browser.get_attribute("#task", "data-agent-id"))
    assert agent_id
    agent = daemon.agent(agent_id)
    assert agent.worker_id and agent.init_task_data["text"] == text
    await pages.screenshot(handle, "loaded")

    await pages.run(browser.fill("#answer", "a sentence, read"))
    await pages.run(browser.click("#submit"))
    await pages.run(browser.wait_for_selector(done_selector))

    stored = await wait_for_submission(daemon, agent_id)
    assert stored.data == {"answer": "a sentence, read"}
    await wait_for(lambda: agent.status == Status.COMPLETED, "status completed", DEADLINE)
    # The provider's submit hook got what the page submitted.
    handed = await pages.run(browser.evaluate("window.providerSubmissions"))
    assert handed == [{"answer": "a sentence, read"}]
    await pages.screenshot(handle, "submitted")

    # Both clients speak a current version: no mismatch warning, no page errors.
    assert not [m for m in handle.console if "mismatch" in m.lower()], handle.console
    assert handle.errors == []


@pytest.mark.parametrize("page", ["mephisto_static.html", "architect_static.html"])
@pytest_twisted.ensureDeferred
async def test_a_reload_keeps_the_same_unit(pages: Pages, daemon: Daemon, page: str) -> None:
    first = await pages.open(page, "bob")
    await pages.run(first.page.wait_for_selector("#unit-text"))
    agent_id = await pages.run(first.page.get_attribute("#task", "data-agent-id"))
    text = await pages.run(first.page.inner_text("#unit-text"))

    await pages.run(first.page.reload())
    await pages.run(first.page.wait_for_selector("#unit-text"))
    assert await pages.run(first.page.get_attribute("#task", "data-agent-id")) == agent_id
    assert await pages.run(first.page.inner_text("#unit-text")) == text

    other = await pages.open(page, "carol")
    await pages.run(other.page.wait_for_selector("#unit-text"))
    assert await pages.run(other.page.get_attribute("#task", "data-agent-id")) != agent_id
    assert await pages.run(other.page.inner_text("#unit-text")) != text
