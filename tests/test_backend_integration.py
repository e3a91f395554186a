"""The backend over real loopback sockets.

- embedded mode, as `build_service` wires it: HTTP through treq, a browser-like
  Autobahn socket (alive, heartbeat, live updates);
- remote mode against our router (RouterWeb(...).site() on 127.0.0.1), including
  the router restarting mid-task.

Waits are event-driven: small polling steps bounded by a deadline.
"""

from __future__ import annotations

import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.web.client import FileBodyProducer, HTTPConnectionPool

from architect.backend.downloads import RouterDownloads
from architect.backend.files import FileFetchError
from architect.backend.websocket_channel import WebsocketChannel
from architect.config import BackendConfig, Config, RouterConfig, StorageConfig, load_config
from architect.protocol import (
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    MEPHISTO_BOUND_LIVE_UPDATE,
    FailureReason,
    Status,
)
from architect.router.hub import RouterHub
from architect.router.web import RouterWeb
from architect.storage import StorageError
from architect.upload_names import new_upload_name
from tests.clients import Browsers, PacketClient, open_socket, wait_for
from tests.daemon import Daemon, Daemons, daemon_config

# Each embedded daemon here runs once on SQLite, once on PostgreSQL (conftest).
DAEMONS_ON_EVERY_ENGINE = True

reactor: Any = _reactor
DEADLINE = 5.0  # seconds to wait for something that should happen at once
TOKEN = "backend-token"


# --- HTTP ---


@pytest.fixture
def workers() -> Browsers:
    # Not persistent: a restarted router must not be reached through an old connection.
    return Browsers(HTTPConnectionPool(reactor, persistent=False))


async def post_json(
    workers: Browsers, port: int, path: str, body: dict[str, Any]
) -> tuple[int, Any]:
    """POST from the browser of the agent the body names (USED_AGENT_ID)."""
    browser = workers.of_agent(body.get("USED_AGENT_ID", ""))
    return await browser.post_json(f"http://127.0.0.1:{port}{path}", body)


def provider_data(worker: str, assignment: str = "assignment1") -> dict[str, Any]:
    return {
        "worker_name": worker,
        "agent_registration_id": f"{assignment}-{worker}",
        "assignment_id": assignment,
        "provider_type": "mock",
    }


async def request_agent(workers: Browsers, port: int, worker: str) -> dict[str, Any]:
    """A registration from the worker's own browser."""
    browser = workers.of_worker(worker)
    code, answer = await browser.post_json(
        f"http://127.0.0.1:{port}/request_agent",
        {"provider_data": provider_data(worker), "client_timestamp": time.time()},
    )
    assert code == 200, answer
    data: dict[str, Any] = answer["data"]
    workers.registered(data, browser)
    return data


async def submit_json(
    workers: Browsers, port: int, agent_id: str, final_data: dict[str, Any]
) -> tuple[int, Any]:
    """A page's /submit_task with JSON data: (status code, answer)."""
    return await post_json(
        workers, port, "/submit_task", {"USED_AGENT_ID": agent_id, "final_data": final_data}
    )


@pytest.fixture
def router_config(tmp_path: Path) -> RouterConfig:
    return RouterConfig(
        listen="tcp:0:interface=127.0.0.1",
        backend_token=TOKEN,
        request_timeout=5.0,
        disconnect_grace=0.3,
        upload_dir=tmp_path / "uploads",
    )


# --- embedded ---


@pytest_twisted.async_fixture
async def embedded(daemons: Daemons) -> Daemon:
    return await daemons.embedded(
        router={"task_config": {"task_title": "demo"}, "disconnect_grace": 0.3},
        backend={"status_interval": 0.1},
    )


@pytest_twisted.ensureDeferred
async def test_embedded_mode_end_to_end(embedded: Daemon, workers: Browsers) -> None:
    daemon, port = embedded, embedded.port
    assert daemon.hub.backend is not None
    details = await request_agent(workers, port, "w1")
    agent_id = details["agent_id"]
    assert details["failure_reason"] is None
    assert details["init_task_data"]["text"].startswith("Demo unit 1 of 10")
    agent = daemon.agent(agent_id)

    browser = await workers.of_agent(agent_id).open_socket(port)
    try:
        browser.send(ALIVE, agent_id)
        browser.send(HEARTBEAT, agent_id)
        await wait_for(lambda: browser.of_type(HEARTBEAT), "a heartbeat reply")
        reply = browser.of_type(HEARTBEAT)[0].data
        assert reply["status"] == Status.IN_TASK
        assert reply["last_mephisto_ping"] > 0
        assert Status.IN_TASK in browser.statuses()

        # browser -> task code, a repeated update taken once
        for _ in range(2):
            browser.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "text": "hi"})
        got = await agent.act(DEADLINE)
        assert got is not None and got["text"] == "hi"
        assert await agent.act(0.2) is None

        # task code -> browser
        agent.observe({"text": "hello"})
        await wait_for(lambda: browser.of_type(CLIENT_BOUND_LIVE_UPDATE), "a client-bound update")
        update = browser.of_type(CLIENT_BOUND_LIVE_UPDATE)[0]
        assert update.subject_id == agent_id
        assert update.data["text"] == "hello" and update.data["update_id"]

        # a page reload gets the same agent and the conversation so far
        again = await request_agent(workers, port, "w1")
        assert again["agent_id"] == agent_id
        past = again["init_task_data"]["past_live_updates"]
        assert [u["text"] for u in past] == ["hi", "hello"]

        code, body = await post_json(
            workers,
            port,
            "/submit_task",
            {"USED_AGENT_ID": agent_id, "final_data": {"answer": 42}, "client_timestamp": 1.0},
        )
        assert (code, body) == (200, {"status": "Submitted!"})
        # completed is pushed only once the submission is committed
        await wait_for(lambda: Status.COMPLETED in browser.statuses(), "status completed")
        assert agent.status == Status.COMPLETED
        stored = await daemon.database.list_submissions(agent_id=agent_id)
        assert [(s.kind, s.data) for s in stored] == [("unit", {"answer": 42})]
    finally:
        await browser.close()


@pytest_twisted.ensureDeferred
async def test_embedded_backend_learns_a_router_disconnect(
    embedded: Daemon, workers: Browsers
) -> None:
    daemon, port = embedded, embedded.port
    agent_id = (await request_agent(workers, port, "w2"))["agent_id"]
    browser = await workers.of_agent(agent_id).open_socket(port)
    browser.send(ALIVE, agent_id)
    await wait_for(lambda: Status.IN_TASK in browser.statuses(), "status in task")
    await browser.close()  # not back within disconnect_grace (0.3 s)
    agent = daemon.agent(agent_id)
    await wait_for(lambda: agent.status == Status.DISCONNECT, "the backend to take disconnect")


@pytest_twisted.ensureDeferred
async def test_embedded_version_mismatch_reaches_the_backend_log(
    embedded: Daemon, workers: Browsers
) -> None:
    port = embedded.port
    with capturedLogs() as events:
        response = await treq.get(
            f"http://127.0.0.1:{port}/task_config.json?mephisto_task_version=1.9.0",
            pool=workers.pool,
        )
        assert response.code == 200
        await response.content()
        await wait_for(
            lambda: any(
                e["log_level"] == LogLevel.error and e.get("received") == "1.9.0" for e in events
            ),
            "the backend's version-mismatch error",
        )


# --- remote ---


class Router:
    """Our router on 127.0.0.1; `restart` stops it as a crashing process would and starts anew."""

    def __init__(self, config: RouterConfig) -> None:
        self.config = config
        self.hub: RouterHub
        self.listener: IListeningPort
        self.port = 0
        self.start()

    def start(self) -> None:
        self.hub = RouterHub(reactor, self.config)
        site = RouterWeb(self.hub, self.config).site()
        self.listener = reactor.listenTCP(self.port, site, interface="127.0.0.1")
        host = self.listener.getHost()
        assert isinstance(host, IPv4Address)
        self.port = host.port

    async def stop(self) -> None:
        stopped = self.listener.stopListening()
        if stopped is not None:
            await stopped
        links = [self.hub.backend, *self.hub.link_agents]
        for link in links:
            transport = getattr(link, "transport", None)
            if transport is not None:
                transport.abortConnection()


def remote_backend_config(tmp_path: Path, router: Router, **backend: Any) -> Config:
    """A backend alone (mode remote) connecting to `router` with TOKEN, its data in tmp_path."""
    settings: dict[str, Any] = {"backend_token": TOKEN, **backend}
    return Config(
        path=tmp_path / "backend.ini",
        router=RouterConfig(upload_dir=tmp_path / "unused"),
        backend=BackendConfig(
            mode="remote", router_url=f"ws://127.0.0.1:{router.port}/", **settings
        ),
        storage=StorageConfig(data_dir=tmp_path / "data"),
    )


@pytest_twisted.ensureDeferred
async def test_a_static_page_submits_after_both_router_and_backend_restarted(
    tmp_path: Path, router_config: RouterConfig, workers: Browsers, daemons: Daemons
) -> None:
    """A machine restart with separate services: the new router knows no agent, the new
    backend takes its agents back and tells its only router of them, so the page left open
    submits as it is."""
    router = Router(router_config)
    config = remote_backend_config(tmp_path, router, status_interval=0.1)
    backend = await daemons.start(config, ready=False)
    try:
        await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
        details = await request_agent(workers, router.port, "w1")
        agent_id = details["agent_id"]
        assert agent_id
    finally:
        await daemons.stop(backend)
        await router.stop()

    router.start()  # the same port, nothing remembered
    assert router.hub.agents.get(agent_id) is None
    backend = await daemons.start(config, ready=False)
    try:
        await wait_for(lambda: router.hub.agents.get(agent_id) is not None, "the router to learn")
        code, body = await submit_json(workers, router.port, agent_id, {"answer": 7})
        assert (code, body) == (200, {"status": "Submitted!"})
        database = backend.database

        async def stored() -> bool:
            return bool(await database.list_submissions(agent_id=agent_id))

        await wait_for(stored, "the submission to be stored")
        assert await backend.status(agent_id) == Status.COMPLETED
    finally:
        await daemons.stop(backend)
        await router.stop()


@pytest_twisted.ensureDeferred
async def test_remote_mode_survives_a_router_restart(
    tmp_path: Path, router_config: RouterConfig, workers: Browsers, daemons: Daemons
) -> None:
    router = Router(router_config)
    config = remote_backend_config(tmp_path, router, status_interval=0.1, reconnect_giveup=30.0)
    backend = await daemons.start(config, ready=False)
    assert not backend.runs_router  # the backend alone
    browsers: list[PacketClient] = []
    try:
        await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
        agent_id = (await request_agent(workers, router.port, "w1"))["agent_id"]
        agent = backend.agent(agent_id)
        browser = await workers.of_agent(agent_id).open_socket(router.port)
        browsers.append(browser)
        browser.send(ALIVE, agent_id)
        browser.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "n": 1})
        before = await agent.act(DEADLINE)
        assert before is not None and before["n"] == 1
        agent.observe({"n": 2})
        await wait_for(lambda: browser.of_type(CLIENT_BOUND_LIVE_UPDATE), "the first update")

        # The router goes away mid-task.
        [channel] = backend.channels
        assert isinstance(channel, WebsocketChannel)
        await router.stop()
        await wait_for(lambda: not channel.is_open, "the backend to notice")
        await wait_for(lambda: browser.has_closed, "the browser to notice")
        # What the task code sends in the gap is kept (once recorded: routes.py).
        agent.observe({"n": 3})
        agent.observe({"n": 4})
        await wait_for(
            lambda: [p.data.get("n") for p in channel.unsent if p.data.get("n")] == [3, 4],
            "the gap's updates kept for the router",
        )

        router.start()  # a new process: a new hub, nothing remembered
        await wait_for(lambda: router.hub.backend is not None, "the backend to reconnect")
        assert channel.connections == 2
        browser2 = await workers.of_agent(agent_id).open_socket(router.port)
        browsers.append(browser2)
        browser2.send(ALIVE, agent_id)
        await wait_for(
            lambda: len(browser2.of_type(CLIENT_BOUND_LIVE_UPDATE)) == 2, "the gap's updates"
        )
        assert [p.data["n"] for p in browser2.of_type(CLIENT_BOUND_LIVE_UPDATE)] == [3, 4]
        # the new router learns the agent's status from the backend
        await wait_for(lambda: Status.IN_TASK in browser2.statuses(), "status in task")
        assert router.hub.agents.statuses()[agent_id] == Status.IN_TASK

        # the live agent carries on
        browser2.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u5", "n": 5})
        after = await agent.act(DEADLINE)
        assert after is not None and after["n"] == 5
        code, body = await post_json(
            workers,
            router.port,
            "/submit_task",
            {"USED_AGENT_ID": agent_id, "final_data": {"done": True}},
        )
        assert (code, body) == (200, {"status": "Submitted!"})
        await wait_for(lambda: Status.COMPLETED in browser2.statuses(), "status completed")
        assert agent.status == Status.COMPLETED
        stored = await backend.database.list_submissions(agent_id=agent_id)
        assert [(s.kind, s.data) for s in stored] == [("unit", {"done": True})]
        assert [u.get("n") for u in agent.past_live_updates] == [1, 2, 3, 4, 5]
    finally:
        for b in browsers:
            await b.close()
        await daemons.stop(backend)
        await router.stop()


@pytest_twisted.ensureDeferred
async def test_remote_backend_closes_cleanly_on_stop(
    tmp_path: Path, router_config: RouterConfig, daemons: Daemons
) -> None:
    router = Router(router_config)
    config = remote_backend_config(tmp_path, router)
    backend = await daemons.start(config, ready=False)
    try:
        await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
        socket = router.hub.backend
        await daemons.stop(backend)
        assert router.hub.backend is None
        assert getattr(socket, "wasClean", None) is True
        await deferLater(reactor, 0.3)
        assert router.hub.backend is None  # and it does not come back
    finally:
        await router.stop()


@pytest_twisted.ensureDeferred
async def test_remote_backend_with_a_wrong_token_is_refused(
    tmp_path: Path, router_config: RouterConfig, daemons: Daemons
) -> None:
    router = Router(router_config)
    config = remote_backend_config(tmp_path, router, backend_token="wrong")
    with capturedLogs() as events:
        backend = await daemons.start(config, ready=False)
        try:
            await wait_for(
                lambda: any(e["log_level"] == LogLevel.error for e in events),
                "the refusal to be logged",
            )
            assert router.hub.backend is None
        finally:
            await daemons.stop(backend)
            await router.stop()
    said = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
    assert any("backend_token" in line for line in said), said


@pytest_twisted.ensureDeferred
async def test_a_remote_backend_replaced_by_another_says_so(
    tmp_path: Path, router_config: RouterConfig, daemons: Daemons
) -> None:
    router = Router(router_config)
    with capturedLogs() as events:
        first = await daemons.start(remote_backend_config(tmp_path / "one", router))
        try:
            await wait_for(lambda: router.hub.backend is not None, "the first backend")
            second = await daemons.start(remote_backend_config(tmp_path / "two", router))
            await wait_for(
                lambda: any(e["log_level"] == LogLevel.error for e in events),
                "the replacement to be logged",
            )
        finally:
            await daemons.stop_all()
            await router.stop()
    assert first is not second
    said = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
    assert any("second backend" in line for line in said), said
    assert not any("backend_token" in line for line in said), said


# --- the database across a restart of the daemon ---


def write_config(tmp_path: Path) -> Path:
    """An embedded daemon's config file (run with Daemons, which restarts it on its port)."""
    (tmp_path / "units.jsonl").write_text("".join(f'{{"n": {n}}}\n' for n in range(3)))
    path = tmp_path / "router.ini"
    path.write_text(
        "[router]\nlisten = tcp:0:interface=127.0.0.1\nupload_dir = uploads\n"
        "disconnect_grace = 0.3\n"
        "[backend]\nmode = embedded\nstatus_interval = 0.1\n"
        "[storage]\ndata_dir = data\n"
        "[task]\nname = run-a\nunits = units.jsonl\n"
    )
    return path


@pytest_twisted.ensureDeferred
async def test_embedded_submissions_and_files_survive_a_restart(
    tmp_path: Path, workers: Browsers, daemons: Daemons
) -> None:
    path = write_config(tmp_path)
    daemon = await daemons.start(load_config(path))
    port = daemon.port
    database = daemon.database
    run_id = daemon.task_run_id

    async def unit_statuses() -> dict[int, str]:
        return {u.assignment_index: u.status for u in await database.list_units(run_id)}

    first = await request_agent(workers, port, "w1")
    assert first["init_task_data"] == {"n": 0}
    code, body = await submit_json(workers, port, first["agent_id"], {"answer": 1})
    assert (code, body) == (200, {"status": "Submitted!"})

    second = await request_agent(workers, port, "w2")
    assert second["init_task_data"] == {"n": 1}
    response = await workers.of_agent(second["agent_id"]).http.post(
        f"http://127.0.0.1:{port}/submit_task",
        data={
            "USED_AGENT_ID": second["agent_id"],
            "final_string_data": json.dumps({"answer": 2}),
        },
        files={"upload": ("notes.txt", "text/plain", FileBodyProducer(BytesIO(b"my notes")))},
    )
    assert response.code == 200, await response.text()
    await response.content()

    third = await request_agent(workers, port, "w3")
    assert third["init_task_data"] == {"n": 2}

    async def both_done() -> bool:
        statuses = await unit_statuses()
        return statuses[0] == statuses[1] == "completed"

    await wait_for(both_done, "both submissions to complete their units")

    # The daemon starts again with the same data folder and task run name.
    daemon = await daemons.restart(daemon)
    database = daemon.database
    assert daemon.task_run_id == run_id
    # A static page holds no socket: the agent still working is kept with its unit.
    assert await unit_statuses() == {0: "completed", 1: "completed", 2: "reserved"}
    third_agent = await database.get_agent(third["agent_id"])
    assert third_agent is not None and third_agent.status == Status.IN_TASK

    submissions = await database.list_submissions(task_run_id=run_id, kind="unit")
    assert [(s.agent_id, s.data.get("answer")) for s in submissions] == [
        (first["agent_id"], 1),
        (second["agent_id"], 2),
    ]
    [kept] = submissions[1].files
    assert kept.original_name == "notes.txt" and kept.mimetype == "text/plain"
    assert (database.data_dir / kept.stored_path).read_bytes() == b"my notes"
    assert submissions[1].data["files"][0]["originalname"] == "notes.txt"

    done = await request_agent(workers, port, "w1")
    assert done["agent_id"] is None
    assert done["failure_reason"] == FailureReason.TASK_MISSING
    assert (await request_agent(workers, port, "w4"))["failure_reason"] == (FailureReason.NO_WORK)
    # The page left open across the restart submits as it is (no reload first).
    code, body = await submit_json(workers, port, third["agent_id"], {"answer": 3})
    assert (code, body) == (200, {"status": "Submitted!"})
    assert await unit_statuses() == {0: "completed", 1: "completed", 2: "completed"}
    reload = await request_agent(workers, port, "w3")
    assert reload["failure_reason"] == FailureReason.TASK_MISSING


LIVE_ECHO_TASK = """\
from architect.tasks.agent import AgentGone


async def run_assignment(assignment, agents):
    [agent] = agents
    while True:
        try:
            update = await agent.act()
        except AgentGone:
            return
        agent.observe({"echo": update})
"""


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("resume_window", ["0.5", "0"])
async def test_live_agents_whose_pages_do_not_come_back_after_a_restart_free_their_units(
    tmp_path: Path, workers: Browsers, daemons: Daemons, resume_window: str
) -> None:
    path = write_config(tmp_path)
    (tmp_path / "echo_task.py").write_text(LIVE_ECHO_TASK)
    config = path.read_text()
    config = config.replace("[task]\n", "[task]\nmodule = echo_task.py\n")
    config = config.replace("[backend]\n", f"[backend]\nresume_window = {resume_window}\n")
    path.write_text(config)
    daemon = await daemons.start(load_config(path))
    port = daemon.port
    first = await request_agent(workers, port, "w1")  # no page ever opens its socket
    assert first["init_task_data"] == {"n": 0}
    run_id = daemon.task_run_id

    daemon = await daemons.restart(daemon)
    database = daemon.database

    async def disconnected() -> bool:
        stored = await database.get_agent(first["agent_id"])
        return stored is not None and stored.status == Status.DISCONNECT

    await wait_for(disconnected, "the agent to be disconnected")
    units = {u.assignment_index: u.status for u in await database.list_units(run_id)}
    assert units[0] == "available"
    again = await request_agent(workers, port, "w1")
    assert again["failure_reason"] == FailureReason.TASK_MISSING
    assert (await request_agent(workers, port, "w2"))["init_task_data"] == {"n": 0}


PAIR_TASK = """\
from twisted.internet.defer import Deferred


async def run_assignment(assignment, agents):
    await Deferred()  # the room's statuses are what the test looks at
"""


@pytest_twisted.ensureDeferred
async def test_after_a_restart_a_partner_who_does_not_come_back_ends_the_room(
    tmp_path: Path, workers: Browsers, daemons: Daemons
) -> None:
    """Embedded: a two-seat room is taken back; one page comes back, the other does not
    within resume_window: that one is disconnect, its unit is free again, and the one
    who came back is told `partner disconnect` on its socket."""
    path = write_config(tmp_path)
    (tmp_path / "pair_task.py").write_text(PAIR_TASK)
    config = path.read_text()
    config = config.replace("[task]\n", "[task]\nmodule = pair_task.py\nunits_per_assignment = 2\n")
    config = config.replace("[backend]\n", "[backend]\nresume_window = 0.5\n")
    path.write_text(config)
    before = await daemons.start(load_config(path))
    port = before.port
    first = await request_agent(workers, port, "w1")
    second = await request_agent(workers, port, "w2")
    run_id = before.task_run_id
    await wait_for(
        lambda: before.agent(second["agent_id"]).status == Status.IN_TASK, "the room to start"
    )

    daemon = await daemons.restart(before)
    back = await open_socket(port)
    try:
        back.send(ALIVE, first["agent_id"])
        await wait_for(lambda: Status.PARTNER_DISCONNECT in back.statuses(), "partner disconnect")
        assert await daemon.status(second["agent_id"]) == Status.DISCONNECT
        database = daemon.database

        stored = await database.get_agent(second["agent_id"])
        assert stored is not None and stored.unit_id is not None
        unit_id = stored.unit_id

        async def second_unit_free() -> bool:
            unit = await database.get_unit(unit_id)
            return unit is not None and unit.status == "available" and unit.task_run_id == run_id

        await wait_for(second_unit_free, "the absent partner's unit to be free")
    finally:
        await back.close()


@pytest_twisted.ensureDeferred
async def test_an_onboarding_worker_keeps_their_place_across_a_restart(
    tmp_path: Path, workers: Browsers, daemons: Daemons
) -> None:
    """An onboarding form holds no socket: a short resume window does not end it."""
    path = write_config(tmp_path)
    (tmp_path / "echo_task.py").write_text(
        LIVE_ECHO_TASK + "\n\ndef validate_onboarding(worker, data):\n    return data['ok']\n"
    )
    config = path.read_text()
    config = config.replace("[task]\n", "[task]\nmodule = echo_task.py\nonboarding = on\n")
    config = config.replace("[backend]\n", "[backend]\nresume_window = 0.2\n")
    path.write_text(config)
    daemon = await daemons.start(load_config(path))
    port = daemon.port
    onboarding = await request_agent(workers, port, "w1")
    assert onboarding["agent_id"].startswith("onboarding")

    await daemons.restart(daemon)
    await deferLater(reactor, 0.5)  # past the resume window
    code, answer = await post_json(
        workers,
        port,
        "/submit_onboarding",
        {
            "provider_data": {
                "USED_AGENT_ID": onboarding["agent_id"],
                "onboarding_data": {"ok": True},
            },
            "client_timestamp": time.time(),
        },
    )
    assert code == 200, answer
    assert answer["data"]["failure_reason"] is None
    assert answer["data"]["init_task_data"] == {"n": 0}


@pytest_twisted.ensureDeferred
async def test_a_remote_backend_fetches_uploads_with_its_token(
    router_config: RouterConfig,
) -> None:
    router = Router(router_config)
    try:
        router_config.upload_dir.mkdir(parents=True, exist_ok=True)
        name = new_upload_name("agent-1", "notes.txt")
        (router_config.upload_dir / name).write_bytes(b"uploaded")
        url = f"ws://127.0.0.1:{router.port}/"
        downloads = RouterDownloads(reactor, url, TOKEN)
        assert await downloads.fetch(name, "agent-1") == b"uploaded"
        with pytest.raises(FileFetchError, match="403"):
            await RouterDownloads(reactor, url, "wrong").fetch(name, "agent-1")
        with pytest.raises(FileFetchError, match="404"):
            await downloads.fetch("f" * 32 + ".txt", "agent-1")
        with pytest.raises(FileFetchError, match="404"):
            await downloads.fetch(name, "agent-2")  # another agent's upload
        # Kept by the backend: the router's copy goes, and only for its agent.
        await downloads.discard(name, "agent-2")
        assert (router_config.upload_dir / name).exists()
        await downloads.discard(name, "agent-1")
        assert not (router_config.upload_dir / name).exists()
    finally:
        await router.stop()


@pytest_twisted.ensureDeferred
async def test_a_database_that_cannot_open_stops_the_start(
    tmp_path: Path, daemons: Daemons
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    config = Config(
        path=tmp_path / "router.ini",
        router=RouterConfig(listen="tcp:0:interface=127.0.0.1", upload_dir=tmp_path / "up"),
        backend=BackendConfig(mode="embedded"),
        storage=StorageConfig(data_dir=tmp_path / "not-a-folder"),
    )
    failures: list[Any] = []
    with capturedLogs() as events:
        daemon = await daemons.start(config, ready=False, on_start_failure=failures.append)
        with pytest.raises(StorageError, match="cannot create the data folder"):
            await daemon.when_ready()
    assert [f.check(StorageError) for f in failures] == [StorageError]
    assert any(e["log_level"] == LogLevel.critical for e in events)
    assert daemon.hub.backend is None  # never announced


@pytest_twisted.ensureDeferred
async def test_a_registration_while_the_embedded_backend_starts_waits_for_it(
    daemons: Daemons, workers: Browsers
) -> None:
    """The router listens before its backend has opened the database (on PostgreSQL a
    connection and the schema away): a page registering then is answered, not refused."""
    daemon = await daemons.start(daemon_config(daemons.next_folder()), ready=False)
    router = daemon.service.getServiceNamed("router")
    await wait_for(lambda: router.port_number is not None, "the router to listen")
    details = await request_agent(workers, daemon.port, "w1")
    assert details["agent_id"], details
    await daemon.when_ready()
