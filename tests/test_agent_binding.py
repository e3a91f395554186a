"""An agent belongs to the browser that registered it, tried as an attacker would.

Mallory knows Alice's page URL (worker and assignment are in it, in the access log, in
Referer headers), and maybe Alice's agent id too: she gets neither Alice's agent, nor
her socket, nor a submission in her name. Alice's own browser carries on as before.
Real daemons on 127.0.0.1, real sockets; tests/browser has the same with Chromium.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers

from architect.protocol import ALIVE, HEARTBEAT, CloseCode, FailureReason
from architect.router.sessions import COOKIE_NAME
from tests.clients import Browser, wait_for
from tests.daemon import Daemon, Daemons, daemon_config

# Each embedded daemon here runs once on SQLite, once on PostgreSQL (conftest).
DAEMONS_ON_EVERY_ENGINE = True


def alices_page(tab: str = "") -> dict[str, Any]:
    """The provider data of Alice's page URL (as mephisto-task's mock provider makes it)."""
    return {
        "worker_name": "alice",
        "agent_registration_id": "1-alice" + tab,
        "assignment_id": "1",
        "provider_type": "mock",
    }


async def register(daemon: Daemon, browser: Browser, provider: dict[str, Any]) -> dict[str, Any]:
    code, answer = await browser.post_json(
        f"{daemon.url}/request_agent", {"provider_data": provider}
    )
    assert code == 200, answer
    data: dict[str, Any] = answer["data"]
    return data


async def close_code(browser: Browser, daemon: Daemon, agent_id: str) -> int | None:
    """What the router does with `browser`'s socket saying `alive` for the agent: the
    close code, or None if it keeps the socket (answering its heartbeat)."""
    socket = await browser.open_socket(daemon.port)
    socket.send(ALIVE, agent_id)
    socket.send(HEARTBEAT, agent_id)
    closed = socket.factory.closed
    await wait_for(lambda: socket.has_closed or socket.of_type(HEARTBEAT), "an answer")
    if socket.has_closed:
        code: int | None = await closed
        return code
    await socket.close()
    return None


@pytest_twisted.ensureDeferred
async def test_a_second_browser_with_the_same_url_gets_no_access_to_the_agent(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    alice, mallory = Browser(), Browser()
    mine = await register(daemon, alice, alices_page())
    agent_id = mine["agent_id"]
    assert agent_id and mine["failure_reason"] is None

    # The same URL in another browser: a refusal that says why, and names no agent.
    code, stolen = await mallory.post_json(
        f"{daemon.url}/request_agent", {"provider_data": alices_page()}
    )
    assert code == 200 and stolen["data"]["agent_id"] is None
    assert stolen["data"]["failure_reason"] == FailureReason.OTHER_BROWSER
    assert agent_id not in json.dumps(stolen)

    # Knowing the agent id does not help: no socket, no submission, no upload.
    assert await close_code(mallory, daemon, agent_id) == CloseCode.NOT_YOURS == 4003
    assert await close_code(Browser(), daemon, agent_id) == CloseCode.NOT_YOURS  # no cookie
    for path, body in [
        ("/submit_task", {"USED_AGENT_ID": agent_id, "final_data": {"answer": "mallory"}}),
        ("/submit_metadata", {"USED_AGENT_ID": agent_id, "metadata": {"m": 1}}),
        ("/submit_onboarding", {"provider_data": {"USED_AGENT_ID": agent_id}}),
        ("/log_error", {"USED_AGENT_ID": agent_id, "error_data": {"forged": True}}),
    ]:
        code, answer = await mallory.post_json(f"{daemon.url}{path}", body)
        assert (path, code) == (path, 403) and "another browser" in answer["error"]
    response = await mallory.http.post(
        f"{daemon.url}/submit_task",
        data={"USED_AGENT_ID": agent_id, "final_string_data": "{}"},
        files={"file": ("x.txt", "text/plain", FileBodyProducer(io.BytesIO(b"x" * 1000)))},
    )
    assert response.code == 403
    await response.content()
    assert list((tmp_path / "uploads").iterdir()) == []

    # Alice's browser: her reload gets her agent back, her socket and submission work.
    again = await register(daemon, alice, alices_page())
    assert again["agent_id"] == agent_id
    assert await close_code(alice, daemon, agent_id) is None
    code, answer = await alice.post_json(
        f"{daemon.url}/submit_task", {"USED_AGENT_ID": agent_id, "final_data": {"answer": 1}}
    )
    assert (code, answer) == (200, {"status": "Submitted!"})
    stored = await daemon.database.list_submissions(agent_id=agent_id)
    assert [s.data for s in stored] == [{"answer": 1}]


@pytest_twisted.ensureDeferred
async def test_one_browser_may_hold_several_agents(tmp_path: Path, daemons: Daemons) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    alice = Browser()
    first = await register(daemon, alice, alices_page("-tab1"))
    second = await register(daemon, alice, alices_page("-tab2"))
    assert first["agent_id"] and second["agent_id"] and first["agent_id"] != second["agent_id"]
    [cookie] = [c for c in alice.cookies if c.name == COOKIE_NAME]  # issued once
    for agent_id in (first["agent_id"], second["agent_id"]):
        assert await close_code(alice, daemon, agent_id) is None
    assert cookie.value == next(c.value for c in alice.cookies if c.name == COOKIE_NAME)


async def set_cookie(daemon: Daemon, headers: dict[str, str]) -> list[str]:
    """The Set-Cookie headers of a registration sent with `headers`."""
    response = await Browser().http.post(
        f"{daemon.url}/request_agent",
        data=json.dumps({"provider_data": {"worker_name": "w"}}).encode(),
        headers=Headers({k: [v] for k, v in headers.items()}),
    )
    await response.content()
    values: list[str] = response.headers.getRawHeaders("set-cookie") or []
    return values


@pytest_twisted.ensureDeferred
async def test_the_session_cookie(tmp_path: Path, daemons: Daemons) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    [plain] = await set_cookie(daemon, {})
    name, rest = plain.split("=", 1)
    value, attributes = rest.split(";", 1)
    assert name == COOKIE_NAME and len(value) == 32
    assert attributes.split(";") == [" Path=/", " HttpOnly", " SameSite=Lax"]
    # Behind a TLS proxy: a cookie a page in a cross-site iframe (MTurk's) keeps.
    [proxied] = await set_cookie(daemon, {"X-Forwarded-Proto": "https"})
    assert proxied.endswith("; Path=/; HttpOnly; SameSite=None; Secure; Partitioned")
    # A browser that has one is given none; a forged or foreign value is replaced.
    assert await set_cookie(daemon, {"Cookie": f"{COOKIE_NAME}={value}"}) == []
    for forged in ("x", "a" * 31 + "!", "a" * 33, '"' + "a" * 32 + '"'):
        [fresh] = await set_cookie(daemon, {"Cookie": f"{COOKIE_NAME}={forged}"})
        assert fresh.split(";")[0] != f"{COOKIE_NAME}={forged}"


@pytest_twisted.ensureDeferred
async def test_binding_can_be_turned_off(tmp_path: Path, daemons: Daemons) -> None:
    """For workers whose browsers keep no cookies at all: then the URL is the key again."""
    daemon = await daemons.start(daemon_config(tmp_path, router={"bind_agents_to_browser": False}))
    alice, other = Browser(), Browser()
    mine = await register(daemon, alice, alices_page())
    assert [c for c in alice.cookies] == []
    assert (await register(daemon, other, alices_page()))["agent_id"] == mine["agent_id"]
    assert await close_code(other, daemon, mine["agent_id"]) is None


@pytest_twisted.ensureDeferred
async def test_two_tabs_opened_at_once_share_the_session_their_page_brought(
    tmp_path: Path, daemons: Daemons
) -> None:
    """The cookie comes with what a page loads first (its file, the task config), so tabs
    of a first visit that register at the same moment carry one session, not one each."""
    static = tmp_path / "frontend"
    static.mkdir()
    (static / "index.html").write_text("<p>the task</p>")
    daemon = await daemons.start(daemon_config(tmp_path, router={"static_dir": static}))
    for path in ("/index.html", "/task_config.json", "/architect.js"):
        alice = Browser()
        response = await alice.http.get(f"{daemon.url}{path}")
        assert response.code == 200
        await response.content()
        [cookie] = [c for c in alice.cookies if c.name == COOKIE_NAME]
        tabs = await gatherResults(
            [ensureDeferred(register(daemon, alice, alices_page(f"{path}-{n}"))) for n in range(3)]
        )
        assert [c.value for c in alice.cookies if c.name == COOKIE_NAME] == [cookie.value]
        for tab in tabs:  # 3 tabs x 3 paths: 9 of the demo's 10 units
            assert tab["agent_id"], tab
            body = {"USED_AGENT_ID": tab["agent_id"], "final_data": {"tab": 1}}
            assert await alice.post_json(f"{daemon.url}/submit_task", body) == (
                200,
                {"status": "Submitted!"},
            )
