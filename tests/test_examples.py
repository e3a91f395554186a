"""The shipped demo (conf/router.ini) and each of examples/, run from their own config files.

Each config is loaded as a user would run it, then moved to a free port and a
temporary data folder; simulated workers talk to it over HTTP (treq) and the
live WebSocket (PacketClient).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

from architect.config import load_config
from architect.database_url import DatabaseUrl
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, MEPHISTO_BOUND_LIVE_UPDATE, Status
from architect.storage.interface import Submission
from tests.clients import PacketClient, reactor, wait_for
from tests.daemon import relocated, running
from tests.test_task_kinds import Running, next_status

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class Example(Running):
    async def submit_onboarding(self, agent_id: str, data: dict[str, Any]) -> dict[str, Any]:
        browser = self.browsers.of_agent(agent_id)
        response = await browser.http.post(
            f"http://127.0.0.1:{self.port}/submit_onboarding",
            data=json.dumps(
                {"provider_data": {"USED_AGENT_ID": agent_id, "onboarding_data": data}}
            ).encode(),
        )
        assert response.code == 200
        answer: dict[str, Any] = json.loads(await response.text())["data"]
        self.browsers.registered(answer, browser)
        return answer

    async def get(self, path: str) -> str:
        response = await treq.get(f"http://127.0.0.1:{self.port}{path}")
        assert response.code == 200
        text: str = await response.text()
        return text

    async def submissions(self, count: int = 0) -> list[Submission]:
        """The stored unit submissions, once there are at least `count`."""
        database = self.daemon.database
        for _ in range(250):
            found = list(await database.list_submissions(kind="unit"))
            if len(found) >= count:
                return found
            await deferLater(reactor, 0.02, lambda: None)
        raise AssertionError(f"fewer than {count} submissions stored")


@asynccontextmanager
async def running_config(
    path: Path, tmp_path: Path, url: DatabaseUrl | None = None
) -> AsyncIterator[Example]:
    """The config file as shipped, on a free port, with its data in tmp_path (and with
    url, on PostgreSQL: the one line the README says to add to [storage])."""
    config = relocated(load_config(path), tmp_path, disconnect_grace=0.2)
    if url is not None:
        config = attrs.evolve(config, storage=attrs.evolve(config.storage, url=url))
    config = attrs.evolve(config, backend=attrs.evolve(config.backend, status_interval=0.1))
    async with running(config) as daemon:
        yield Example(daemon)


def say(socket: PacketClient, agent_id: str, update_id: str, **data: Any) -> None:
    socket.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": update_id, **data})


def call(socket: PacketClient, agent_id: str, request_id: str, target: str, args: Any) -> None:
    say(socket, agent_id, request_id, request_id=request_id, target=target, args=json.dumps(args))


async def next_update(socket: PacketClient) -> dict[str, Any]:
    packet = await socket.next(CLIENT_BOUND_LIVE_UPDATE)
    return packet.data


@implementer(ILogObserver)
class LogLines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        self.lines.append(formatEvent(event))


@contextmanager
def captured_log() -> Iterator[list[str]]:
    observer = LogLines()
    globalLogPublisher.addObserver(observer)
    try:
        yield observer.lines
    finally:
        globalLogPublisher.removeObserver(observer)


# --- the demo of conf/router.ini ---


@pytest_twisted.ensureDeferred
async def test_shipped_demo_shows_all_three_kinds(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    units = json.loads((ROOT / "architect" / "demo" / "units.json").read_text())
    database_url: DatabaseUrl | None = None
    if engine == "postgresql":
        database_url = request.getfixturevalue("postgres_url")
    with captured_log() as log_lines:
        async with running_config(ROOT / "conf" / "router.ini", tmp_path, database_url) as demo:
            page = await demo.get("/")
            assert '<script src="/architect.js"></script>' in page
            assert "demo.js" in page
            assert "Architect demo" in await demo.get("/task_config.json")

            alice = await demo.register("alice", "1")
            agent_id = alice["agent_id"]
            assert alice["failure_reason"] is None
            assert alice["init_task_data"] == units[0]  # static part: the unit's data
            socket = await demo.live(agent_id)
            await next_status(socket, Status.IN_TASK)

            # live part: the bot greets, then answers through observe/act
            greeting = await next_update(socket)
            assert greeting["from"] == "bot" and "demo bot" in greeting["text"]
            say(socket, agent_id, "m1", text="How many words is this message?")
            reply = await next_update(socket)
            assert reply == {
                "from": "bot",
                "text": "I count 6 words in your message; the longest is 'message'.",
                "update_id": reply["update_id"],
            }

            # remote procedure part: a value, and a clear error
            call(socket, agent_id, "r1", "analyse", {"text": "Seven short words make a sentence."})
            answer = await next_update(socket)
            assert answer["handles"] == "r1"
            assert json.loads(answer["response"]) == {
                "words": 6,
                "characters": 34,
                "longest_word": "sentence",
            }
            call(socket, agent_id, "r2", "analyse", {"text": "  "})
            failed = await next_update(socket)
            assert failed["handles"] == "r2"
            assert failed["error"] == (
                "'analyse' failed: there is nothing to analyse: the text is empty"
            )

            await demo.submit(agent_id, {"label": "negative", "messages": 2})
            await wait_for(lambda: demo.has_status(Status.COMPLETED, agent_id))
            [stored] = await demo.submissions()
            assert stored.data == {"label": "negative", "messages": 2}
            assert stored.agent_id == agent_id

    # The start says what to open and where the results go.
    url = f"http://127.0.0.1:{demo.port}/?worker_id=alice&assignment_id=1"
    assert any(f"open {url} " in line for line in log_lines), log_lines
    database = database_url or tmp_path / "data" / "architect.sqlite3"
    assert any(
        str(database) in line and "architect results --config " in line for line in log_lines
    ), log_lines


# --- examples/static_labelling ---


@pytest_twisted.ensureDeferred
async def test_static_labelling_onboarding_then_a_unit(tmp_path: Path) -> None:
    units = json.loads((EXAMPLES / "static_labelling" / "units.json").read_text())
    async with running_config(EXAMPLES / "static_labelling" / "router.ini", tmp_path) as example:
        assert '<script src="/architect.js"></script>' in await example.get("/")

        # alice fails the onboarding: refused, then and later
        alice = await example.register("alice", "1")
        assert alice["agent_id"].startswith("onboarding")
        questions = alice["init_task_data"]["questions"]
        assert [q["id"] for q in questions] == ["q1", "q2"]
        assert all("answer" not in q for q in questions)  # the page never sees the answers
        refused = await example.submit_onboarding(
            alice["agent_id"], {"answers": {"q1": "negative", "q2": "negative"}}
        )
        assert refused["agent_id"] is None
        assert refused["failure_reason"] == "You are not currently qualified to work on this task."
        again = await example.register("alice", "2")
        assert again["agent_id"] is None and again["failure_reason"] == refused["failure_reason"]

        # bob passes: he gets a unit, submits, and the submission is stored
        bob = await example.register("bob", "1")
        assert bob["agent_id"].startswith("onboarding")
        unit = await example.submit_onboarding(
            bob["agent_id"], {"answers": {"q1": "positive", "q2": "negative"}}
        )
        assert unit["agent_id"] and not unit["agent_id"].startswith("onboarding")
        assert unit["failure_reason"] is None
        assert unit["init_task_data"] == {
            "text": units[0]["text"],
            "labels": ["positive", "negative", "neutral"],
        }
        await example.submit(unit["agent_id"], {"label": "positive"})
        await wait_for(lambda: example.has_status(Status.COMPLETED, unit["agent_id"]))
        [stored] = await example.submissions()
        assert (stored.agent_id, stored.data) == (unit["agent_id"], {"label": "positive"})

        # validate_submission: a submission without a known label is kept but soft-rejected
        second = await example.register("bob", "2")
        await example.submit(second["agent_id"], {"label": "happy"})
        await wait_for(lambda: example.has_status(Status.SOFT_REJECTED, second["agent_id"]))


# --- examples/live_chat ---


async def two_in_a_chat(example: Example) -> tuple[str, PacketClient, str, PacketClient, str]:
    """alice waits, bob joins; both get the topic. Returns ids, sockets and the topic line."""
    alice = (await example.register("alice", "1"))["agent_id"]
    alice_socket = await example.live(alice)
    await next_status(alice_socket, Status.WAITING)
    bob = (await example.register("bob", "1"))["agent_id"]
    bob_socket = await example.live(bob)
    await next_status(alice_socket, Status.IN_TASK)
    await next_status(bob_socket, Status.IN_TASK)
    topic = await next_update(alice_socket)
    bob_topic = await next_update(bob_socket)
    assert topic["from"] == bob_topic["from"] == "system"
    assert topic["text"] == bob_topic["text"]
    return alice, alice_socket, bob, bob_socket, topic["text"]


@pytest_twisted.ensureDeferred
async def test_live_chat_relays_messages_both_ways(tmp_path: Path) -> None:
    units = json.loads((EXAMPLES / "live_chat" / "units.json").read_text())
    async with running_config(EXAMPLES / "live_chat" / "router.ini", tmp_path) as example:
        alice, alice_socket, bob, bob_socket, topic = await two_in_a_chat(example)
        assert units[0]["topic"] in topic and "/done" in topic

        say(alice_socket, alice, "a1", text="hello bob")
        assert (await next_update(bob_socket))["text"] == "hello bob"
        say(bob_socket, bob, "b1", text="hi alice")
        got = await next_update(alice_socket)
        assert (got["from"], got["text"]) == ("partner", "hi alice")

        say(bob_socket, bob, "b2", text="/done")
        for socket in (alice_socket, bob_socket):
            over = await next_update(socket)
            assert (over["from"], over["text"]) == (
                "system",
                "The chat is over. Please rate it and submit.",
            )
        await example.submit(alice, {"rating": 5, "messages_sent": 1})
        await example.submit(bob, {"rating": 4, "messages_sent": 2})
        await wait_for(lambda: example.has_status(Status.COMPLETED, alice, bob))
        stored = {s.agent_id: s.data for s in await example.submissions()}
        assert stored == {
            alice: {"rating": 5, "messages_sent": 1},
            bob: {"rating": 4, "messages_sent": 2},
        }


@pytest_twisted.ensureDeferred
async def test_live_chat_partner_disconnect(tmp_path: Path) -> None:
    async with running_config(EXAMPLES / "live_chat" / "router.ini", tmp_path) as example:
        alice, alice_socket, bob, bob_socket, _ = await two_in_a_chat(example)
        await bob_socket.close()
        await next_status(alice_socket, Status.PARTNER_DISCONNECT)
        assert await example.status_of(bob) == Status.DISCONNECT
        # alice may still submit what she has
        await example.submit(alice, {"rating": 2, "messages_sent": 0})
        [stored] = await example.submissions(count=1)
        assert (stored.agent_id, stored.data) == (alice, {"rating": 2, "messages_sent": 0})


# --- examples/remote_procedure ---


@pytest_twisted.ensureDeferred
async def test_remote_procedure_values_and_errors(tmp_path: Path) -> None:
    units = json.loads((EXAMPLES / "remote_procedure" / "units.json").read_text())
    async with running_config(EXAMPLES / "remote_procedure" / "router.ini", tmp_path) as example:
        alice = await example.register("alice", "1")
        agent_id = alice["agent_id"]
        assert alice["init_task_data"] == units[0]
        socket = await example.live(agent_id)

        call(socket, agent_id, "r1", "count_words", {"text": units[0]["text"]})
        counted = await next_update(socket)
        assert counted["handles"] == "r1" and "error" not in counted
        assert json.loads(counted["response"]) == {"words": 9, "characters": 44}

        call(socket, agent_id, "r2", "check_spelling", {"text": units[0]["text"]})
        checked = await next_update(socket)
        assert json.loads(checked["response"]) == {
            "unknown": [
                {"word": "Teh", "suggestions": ["the"]},
                {"word": "jumpd", "suggestions": ["jumped"]},
                {"word": "dgo", "suggestions": ["go", "dog"]},
            ]
        }

        call(socket, agent_id, "r3", "check_spelling", {"text": ""})
        failed = await next_update(socket)
        assert failed["handles"] == "r3"
        assert failed["error"] == (
            "'check_spelling' failed: there is nothing to check: the text is empty"
        )
        assert json.loads(failed["response"]) == {"error": failed["error"]}

        corrected = "The quick brown fox jumped over the lazy dog."
        await example.submit(agent_id, {"corrected": corrected})
        await wait_for(lambda: example.has_status(Status.COMPLETED, agent_id))
        [stored] = await example.submissions()
        assert stored.data == {"corrected": corrected}
