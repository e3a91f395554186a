"""Our backend (remote mode, in-process) behind Mephisto's own Node router.

The Node router comes from the PyPI wheel `mephisto==1.1.1` and its npm dependencies,
set up on first use in `bench/.cache/` by `bench/servers.py` (the benchmark harness),
and runs as a subprocess on a free loopback port. Real clients talk to it: HTTP through
treq, a browser-like WebSocket (tests/clients.py).

What the Node router does that our backend must cope with (docs/protocol.md, "Mephisto's Node
router as a peer"): on Node 15 and later it sends every packet twice, the copy about
0.5 s later, so the backend sees each `register_agent`, live update and `submit_unit`
twice; it forgets an agent's socket as soon as `/submit_task` is posted, so statuses
pushed after a submission are not delivered to that browser (Mephisto's page does not
need them). Set-up failures (no Node.js, npm or PyPI) fail this test: they never skip it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.web.client import FileBodyProducer, HTTPConnectionPool
from twisted.web.http_headers import Headers

from architect.backend.channel import Channel
from architect.backend.websocket_channel import WebsocketChannel
from architect.config import BackendConfig, Config, RouterConfig, StorageConfig, TaskConfig
from architect.protocol import (
    AGENT_DETAILS,
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    RETURN_STATUSES,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    Packet,
    Status,
)
from bench.servers import MephistoRouter, SetupError, mephisto_router_dir
from tests.clients import PacketClient, open_socket, wait_for
from tests.daemon import Daemon, Daemons

pytestmark = pytest.mark.slow
reactor: Any = _reactor
DEADLINE = 5.0  # seconds to wait for something that should happen at once
DUPLICATE_DELAY = 2.0  # Node's copy comes about 0.5 s after the original: wait up to this
UNITS = ({"n": 0, "text": "first unit"}, {"n": 1, "text": "second unit"}, {"n": 2})


# --- the Node router ---


@pytest.fixture(scope="module")
def node_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MephistoRouter]:
    try:
        mephisto_router_dir()  # downloads and installs on first use; a no-op once cached
        router = MephistoRouter(tmp_path_factory.mktemp("node-router"))
        router.start()
    except (SetupError, OSError) as e:
        pytest.fail(f"could not set up or start Mephisto's Node router:\n{e}", pytrace=False)
    try:
        yield router
    finally:
        router.stop()


# --- a record of what crosses the backend's channel ---


class ChannelSpy:
    """Every packet the backend receives from, and sends to, the Node router."""

    def __init__(self, channel: Channel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.received: list[Packet] = []
        self.sent: list[Packet] = []
        handle, send = channel.on_message, channel.send

        def on_message(ch: Channel, packet: Packet) -> object:
            self.received.append(packet)
            return handle(ch, packet)

        def spy_send(packet: Packet) -> None:
            self.sent.append(packet)
            send(packet)

        channel.on_message = on_message
        monkeypatch.setattr(channel, "send", spy_send)

    def got(self, packet_type: str, match: Callable[[Packet], bool] = lambda p: True) -> int:
        return sum(1 for p in self.received if p.packet_type == packet_type and match(p))

    def gave(self, packet_type: str, match: Callable[[Packet], bool] = lambda p: True) -> int:
        return sum(1 for p in self.sent if p.packet_type == packet_type and match(p))


# --- our backend, remote, in this process ---


def backend_config(node_router: MephistoRouter, folder: Path) -> Config:
    return Config(
        path=folder / "backend.ini",
        router=RouterConfig(upload_dir=folder / "unused"),
        backend=BackendConfig(
            mode="remote",
            router_url=node_router.ws_url,
            status_interval=0.5,
            reconnect_giveup=30.0,
        ),
        storage=StorageConfig(data_dir=folder / "data"),
        task=TaskConfig(name="interop", units=UNITS),
    )


async def start_backend(
    daemons: Daemons, config: Config, monkeypatch: pytest.MonkeyPatch
) -> tuple[Daemon, ChannelSpy]:
    """Our backend, started and heard by the Node router (stopped with the test's daemons)."""
    daemon = await daemons.start(config)
    assert not daemon.runs_router  # the backend alone
    [channel] = daemon.channels
    assert isinstance(channel, WebsocketChannel)
    # Before any packet can have arrived: the socket opens later.
    spy = ChannelSpy(channel, monkeypatch)
    # A return_statuses proves the Node router took our "alive" (it answers through the
    # loop it starts then); before that it would drop our packets and hang /request_agent.
    await wait_for(lambda: spy.got(RETURN_STATUSES), "the Node router to answer statuses")
    return daemon, spy


@pytest_twisted.async_fixture
async def backend(
    node_router: MephistoRouter,
    tmp_path: Path,
    daemons: Daemons,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Daemon, ChannelSpy]:
    return await start_backend(daemons, backend_config(node_router, tmp_path), monkeypatch)


@pytest.fixture
def http_pool() -> HTTPConnectionPool:
    return HTTPConnectionPool(reactor, persistent=False)


async def post_json(
    pool: HTTPConnectionPool, port: int, path: str, body: dict[str, Any]
) -> tuple[int, Any]:
    d = treq.post(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers=Headers({b"Content-Type": [b"application/json"]}),
        pool=pool,
    )
    d.addTimeout(DEADLINE, reactor)
    response = await d
    return response.code, json.loads(await response.text())


async def request_agent(pool: HTTPConnectionPool, port: int, worker: str) -> dict[str, Any]:
    """The whole agent_details packet the router answers with (what mephisto-task reads)."""
    assignment = f"assignment-{worker}"
    code, answer = await post_json(
        pool,
        port,
        "/request_agent",
        {
            "provider_data": {
                "worker_name": worker,
                "agent_registration_id": f"{assignment}-{worker}",
                "assignment_id": assignment,
                "provider_type": "mock",
            },
            "client_timestamp": time.time(),
        },
    )
    assert code == 200, answer
    assert isinstance(answer, dict)
    return answer


async def open_browser(port: int, agent_id: str) -> PacketClient:
    browser = await open_socket(port)
    browser.send(ALIVE, agent_id)
    return browser


@pytest_twisted.ensureDeferred
async def test_our_backend_serves_a_task_through_mephistos_node_router(
    node_router: MephistoRouter,
    backend: tuple[Daemon, ChannelSpy],
    http_pool: HTTPConnectionPool,
) -> None:
    try:
        with capturedLogs() as events:
            await serve_a_task(node_router.port, *backend, http_pool)
    except Exception as e:
        e.add_note(f"the Node router's log: {node_router.workdir / 'mephisto.log'}")
        raise
    # Node's habits are coped with quietly: no warning or error from our backend.
    complaints = [
        formatEvent(e)
        for e in events
        if e["log_namespace"].startswith("architect") and e["log_level"] >= LogLevel.warn
    ]
    assert complaints == []


async def serve_a_task(
    port: int, daemon: Daemon, spy: ChannelSpy, http_pool: HTTPConnectionPool
) -> None:
    database = daemon.database
    run_id = daemon.task_run_id
    browsers: list[PacketClient] = []
    try:
        # Registration: the router answers with the backend's agent_details packet.
        answer = await request_agent(http_pool, port, "w1")
        assert answer["packet_type"] == AGENT_DETAILS, answer
        details = answer["data"]
        agent_id = details["agent_id"]
        assert agent_id, details
        assert details["failure_reason"] is None
        assert details["init_task_data"] == UNITS[0]
        request_id = details["request_id"]

        def is_request(p: Packet) -> bool:
            return p.data.get("request_id") == request_id

        # Node sends register_agent twice; the backend answers it once.
        await wait_for(
            lambda: spy.got(REGISTER_AGENT, is_request) >= 2,
            "Node's repeated register_agent",
            DUPLICATE_DELAY,
        )
        await deferLater(reactor, 0.2)  # time to (wrongly) answer the copy
        assert spy.gave(AGENT_DETAILS, is_request) == 1
        stored_agents = await database.list_agents(task_run_id=run_id)
        assert [a.agent_id for a in stored_agents] == [agent_id]
        agent = daemon.agent(agent_id)
        assert agent.status == Status.IN_TASK

        # A browser-like socket: alive, then a heartbeat answered by the router.
        browser = await open_browser(port, agent_id)
        browsers.append(browser)
        browser.send(HEARTBEAT, agent_id)
        beat = await browser.next(HEARTBEAT)
        assert beat.subject_id == agent_id
        assert beat.data["last_mephisto_ping"] > 0
        # Node's status cache is filled from the backend's update_status push.
        assert beat.data["status"] == Status.IN_TASK
        first = await browser.next(UPDATE_STATUS)
        assert first.data["status"] == Status.IN_TASK

        # Browser -> backend: one live update, delivered twice by Node, taken once.
        browser.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "text": "hi"})
        got = await agent.act(DEADLINE)
        assert got is not None and got["text"] == "hi"

        def is_u1(p: Packet) -> bool:
            return p.data.get("update_id") == "u1"

        await wait_for(
            lambda: spy.got(MEPHISTO_BOUND_LIVE_UPDATE, is_u1) >= 2,
            "Node's repeated live update",
            DUPLICATE_DELAY,
        )
        assert await agent.act(0.3) is None
        assert [u.get("text") for u in agent.past_live_updates] == ["hi"]

        # Backend -> browser: observe() reaches the page, with an update_id.
        sent_id = agent.observe({"text": "hello"})
        update = await browser.next(CLIENT_BOUND_LIVE_UPDATE)
        assert update.subject_id == agent_id
        assert update.data == {"text": "hello", "update_id": sent_id}

        # A status the backend pushes while the page is connected reaches it.
        other = (await request_agent(http_pool, port, "w2"))["data"]
        assert other["init_task_data"] == UNITS[1]
        browser2 = await open_browser(port, other["agent_id"])
        browsers.append(browser2)
        assert (await browser2.next(UPDATE_STATUS)).data["status"] == Status.IN_TASK
        daemon.agent(other["agent_id"]).set_status(Status.EXPIRED)

        async def next_status_of(b: PacketClient) -> str:
            while True:
                p = await b.next(UPDATE_STATUS)
                if p.data["status"] != Status.IN_TASK:  # skip Node's copies of the first
                    return str(p.data["status"])

        assert await next_status_of(browser2) == Status.EXPIRED

        # The submission: acknowledged by the router, delivered twice, stored once.
        code, body = await post_json(
            http_pool,
            port,
            "/submit_task",
            {"USED_AGENT_ID": agent_id, "final_data": {"answer": 42}, "client_timestamp": 1.5},
        )
        assert (code, body) == (200, {"status": "Submitted!"})
        await wait_for(lambda: agent.status == Status.COMPLETED, "the agent to complete")

        def is_ours(p: Packet) -> bool:
            return p.subject_id == agent_id

        await wait_for(
            lambda: spy.got(SUBMIT_UNIT, is_ours) >= 2, "Node's repeated submit_unit", 2.0
        )
        await deferLater(reactor, 0.3)  # time to (wrongly) store the copy
        stored = await database.list_submissions(agent_id=agent_id)
        assert [(s.kind, s.data) for s in stored] == [("unit", {"answer": 42})]
        units = {u.assignment_index: u.status for u in await database.list_units(run_id)}
        assert units[0] == "completed"
        assert spy.gave(UPDATE_STATUS, lambda p: p.data.get("status") == Status.COMPLETED)
    finally:
        for b in browsers:
            await b.close()


@pytest_twisted.ensureDeferred
async def test_a_restarted_backend_takes_its_agent_back_through_mephistos_node_router(
    node_router: MephistoRouter,
    tmp_path: Path,
    http_pool: HTTPConnectionPool,
    daemons: Daemons,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Node router keeps the page's socket while our backend restarts; the new backend
    finds the agent in Node's return_statuses and carries it on, both ways."""
    config = backend_config(node_router, tmp_path)
    daemon, spy = await start_backend(daemons, config, monkeypatch)
    browser: PacketClient | None = None
    try:
        details = (await request_agent(http_pool, node_router.port, "restart-w1"))["data"]
        agent_id = details["agent_id"]
        browser = await open_browser(node_router.port, agent_id)
        assert (await browser.next(UPDATE_STATUS)).data["status"] == Status.IN_TASK
        agent = daemon.agent(agent_id)
        browser.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "text": "before"})
        assert (await agent.act(DEADLINE) or {}).get("text") == "before"
        await deferLater(reactor, DUPLICATE_DELAY)  # Node's copy, taken as a repeat
        await daemons.stop(daemon)

        daemon, spy = await start_backend(daemons, config, monkeypatch)
        again = daemon.agent(agent_id)  # taken back from the database
        assert [u.get("text") for u in again.past_live_updates] == ["before"]
        await wait_for(
            lambda: daemon.unclaimed() == {}, "the new backend to find its agent in Node's statuses"
        )
        sent_id = again.observe({"text": "after the restart"})
        update = await browser.next(CLIENT_BOUND_LIVE_UPDATE)
        assert update.data == {"text": "after the restart", "update_id": sent_id}
        browser.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u2", "text": "after"})
        assert (await again.act(DEADLINE) or {}).get("text") == "after"
        # Node's copy of u1 (if it comes again) and of u2 are not taken twice.
        assert await again.act(DUPLICATE_DELAY) is None
        assert again.status == Status.IN_TASK
        assert Status.DISCONNECT not in browser.statuses()

        def is_disconnect(p: Packet) -> bool:
            return p.subject_id == agent_id and p.data.get("status") == Status.DISCONNECT

        assert spy.gave(UPDATE_STATUS, is_disconnect) == 0
    finally:
        if browser is not None:
            await browser.close()


@pytest_twisted.ensureDeferred
async def test_a_file_uploaded_through_mephistos_node_router_reaches_our_storage(
    node_router: MephistoRouter,
    backend: tuple[Daemon, ChannelSpy],
    http_pool: HTTPConnectionPool,
) -> None:
    """Node keeps the upload (multer, in /tmp) and names it in the submission; our backend
    fetches it from Node's /download_file and keeps it beside its database, once."""
    daemon, spy = backend
    database = daemon.database
    details = (await request_agent(http_pool, node_router.port, "upload-w1"))["data"]
    agent_id = details["agent_id"]
    d = treq.post(
        f"http://127.0.0.1:{node_router.port}/submit_task",
        data={
            "USED_AGENT_ID": agent_id,
            "final_string_data": json.dumps({"answer": "with a file"}),
        },
        files={
            "upload": (
                "my notes.txt",
                "text/plain",
                FileBodyProducer(BytesIO(b"notes through Node")),
            )
        },
        pool=http_pool,
    )
    d.addTimeout(DEADLINE, reactor)
    response = await d
    assert response.code == 200, await response.text()
    assert json.loads(await response.text()) == {"status": "Submitted!"}

    async def stored() -> bool:
        return bool(await database.list_submissions(agent_id=agent_id))

    await wait_for(stored, "the submission to be stored")
    await wait_for(
        lambda: spy.got(SUBMIT_UNIT, lambda p: p.subject_id == agent_id) >= 2,
        "Node's repeated submit_unit",
        DUPLICATE_DELAY,
    )
    await deferLater(reactor, 0.3)  # time to (wrongly) store the copy
    [submission] = await database.list_submissions(agent_id=agent_id)
    assert submission.data["answer"] == "with a file"
    [kept] = submission.files
    assert kept.original_name == "my notes.txt" and kept.mimetype == "text/plain"
    assert (database.data_dir / kept.stored_path).read_bytes() == b"notes through Node"
    # The copy fetched for Node's repeated delivery was not kept.
    assert [p.name for p in (database.data_dir / "files").iterdir()] == [
        Path(kept.stored_path).name
    ]
