"""mephisto-task 2.0.4 live pages (useMephistoLiveTask) through trouble: going offline,
reloading; and a submission with a file from a mephisto-task page.

architect.js has the same scenarios in test_live_architect_js.py.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from playwright.async_api import FilePayload
from twisted.internet.task import deferLater

from architect.protocol import MEPHISTO_BOUND_LIVE_UPDATE, Status
from tests.browser.support import (
    Launcher,
    PageHandle,
    Pages,
    reactor,
    text_of,
    wait_for,
    wait_for_submission,
    wait_for_text,
)
from tests.browser.tasks import ECHO_TASK
from tests.browser.test_live_chat import send, shown_messages, wait_for_messages

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The whole conversation of the offline test (queued 1 and 2 may reach the task swapped).
EVERYTHING = [
    "Say something.",
    "before",
    "echo: before",
    "sent while offline",
    "queued 1",
    "echo: queued 1",
    "queued 2",
    "echo: queued 2",
    "after",
    "echo: after",
]


async def agent_id_shown(pages: Pages, handle: PageHandle) -> str:
    await pages.run(handle.page.wait_for_selector("#task"))
    agent_id = await pages.run(handle.page.get_attribute("#task", "data-agent-id"))
    assert isinstance(agent_id, str) and agent_id
    return agent_id


@pytest_twisted.ensureDeferred
async def test_offline_then_back_then_reload(launcher: Launcher) -> None:
    """Offline and back: nothing lost, nothing twice; a reload shows it all in order.

    Chromium's offline mode holds a socket's frames: the page's updates written while
    offline reach the router when it is back (on the old socket), each once. Updates the
    router wrote into the old socket while the page was away would be gone with that
    socket; the router writes them again on the page's new socket (mephisto-task drops
    repeated update_ids). A reload shows everything from past_live_updates.
    """
    daemon, pages = await launcher.task(ECHO_TASK, [{"n": 1}])
    handle = await pages.open("mephisto_live.html", "alice", heartbeat_ms=1000, missed_heartbeats=2)
    await wait_for_text(pages, handle, "#status", Status.IN_TASK)
    await wait_for_text(pages, handle, "#connection", "connected")
    agent = daemon.agent(await agent_id_shown(pages, handle))
    received: list[str] = []
    agent.add_live_update_listener(
        lambda _agent, kind, update: (
            received.append(update["text"]) if kind == MEPHISTO_BOUND_LIVE_UPDATE else None
        )
    )
    await send(pages, handle, "before")
    await wait_for_messages(pages, handle, ["Say something.", "before", "echo: before"])

    await pages.run(handle.context.set_offline(True))
    await deferLater(reactor, 0.5)
    # Both sides keep talking while the page is away.
    agent.observe({"text": "sent while offline", "from": "task"})
    await send(pages, handle, "queued 1")
    await send(pages, handle, "queued 2")
    await deferLater(reactor, 3.0)
    assert agent.status == Status.IN_TASK  # back within the grace period
    await pages.run(handle.context.set_offline(False))
    await wait_for(lambda: len(received) >= 3, "the updates queued while offline")
    await wait_for_text(pages, handle, "#connection", "connected")

    # Live traffic resumes both ways on the new socket.
    await send(pages, handle, "after")
    await pages.run(
        handle.page.wait_for_function(
            "() => [...document.querySelectorAll('#messages li')]"
            ".some(li => li.textContent === 'echo: after')"
        )
    )
    await deferLater(reactor, 0.5)
    shown = await shown_messages(pages, handle)
    # Each once; mephisto-task's own queue may reorder what it queued while offline.
    assert received[0] == "before" and received[-1] == "after"
    assert sorted(received) == ["after", "before", "queued 1", "queued 2"]
    assert len(shown) == len(set(shown)), shown  # nothing shown twice
    assert shown[:3] == ["Say something.", "before", "echo: before"]
    # What the router wrote into the dead socket came again on the new one: nothing lost.
    assert sorted(shown) == sorted(EVERYTHING), shown

    # A reload shows the whole conversation, once, in order.
    await pages.run(handle.page.reload())
    await wait_for_text(pages, handle, "#connection", "connected")
    # In the order the task saw it (mephisto-task may have sent its queue in another order).
    queued = [text for q in received[1:3] for text in (q, f"echo: {q}")]
    history = [*EVERYTHING[:4], *queued, "after", "echo: after"]
    assert await shown_messages(pages, handle) == history
    await send(pages, handle, "after the reload")
    more = ["after the reload", "echo: after the reload"]
    await wait_for_messages(pages, handle, [*history, *more])
    assert handle.errors == []


@pytest_twisted.ensureDeferred
async def test_a_submission_with_a_file(launcher: Launcher) -> None:
    daemon, pages = await launcher.task(
        "def init_data(unit):\n    return {'text': 'Attach your notes.'}\n", [{"n": 1}]
    )
    handle = await pages.open("mephisto_static.html", "alice")
    assert await text_of(pages, handle, "#unit-text") == "Attach your notes."
    agent_id = await agent_id_shown(pages, handle)
    await pages.run(handle.page.fill("#answer", "see the file"))
    notes: FilePayload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"my notes"}
    await pages.run(handle.page.set_input_files("#file", files=[notes]))
    await pages.run(handle.page.click("#submit"))
    await pages.run(handle.page.wait_for_selector("#provider-submitted"))
    assert await pages.run(handle.page.evaluate("window.submitAnswer")) == {"status": "Submitted!"}

    stored = await wait_for_submission(daemon, agent_id)
    assert stored.data["answer"] == "see the file"
    assert stored.file_names == ("notes.txt",)
    [described] = stored.data["files"]
    assert described["originalname"] == "notes.txt" and described["size"] == len(b"my notes")
    database = daemon.database
    assert database is not None
    [submission] = await database.list_submissions(kind="unit")
    [stored_file] = submission.files
    assert (database.data_dir / stored_file.stored_path).read_bytes() == b"my notes"
    assert handle.errors == []
