"""A separate router (mode off, with its journal) and our remote backend, as build_service
wires them, over real loopback sockets and a real database (each engine): the confirmation
extension is agreed in the handshake, a worker's "Submitted!" means stored, and what the
router acknowledged while its backend was away reaches the database after a restart."""

from __future__ import annotations

import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any, cast

import attrs
import pytest_twisted
from twisted.internet.interfaces import ITCPTransport
from twisted.web.client import FileBodyProducer, HTTPConnectionPool

from architect.config import BackendConfig, Config, RouterConfig, StorageConfig, TaskConfig
from architect.protocol import (
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    EXPECT_SOCKET_WITHIN,
    MEPHISTO_BOUND_LIVE_UPDATE,
    UPDATE_STATUS,
    Status,
)
from architect.router.websocket import RouterSocket
from tests.clients import Browsers, wait_for
from tests.daemon import ANY_LOOPBACK_PORT, Daemon, Daemons, reactor
from tests.test_backend_integration import LIVE_ECHO_TASK

# Their daemons keep the run in a database: each test runs on every engine (conftest).
DAEMONS_ON_EVERY_ENGINE = True
TOKEN = "journal-test-token"


def router_config(folder: Path) -> Config:
    return Config(
        path=folder / "router.ini",
        router=RouterConfig(
            listen=ANY_LOOPBACK_PORT,
            backend_token=TOKEN,
            request_timeout=5.0,
            upload_dir=folder / "uploads",
            journal_dir=folder / "journal",
        ),
        backend=BackendConfig(mode="off"),
    )


def backend_config(folder: Path, router: Daemon, **task: Any) -> Config:
    return Config(
        path=folder / "backend.ini",
        router=RouterConfig(upload_dir=folder / "unused"),
        backend=BackendConfig(
            mode="remote",
            router_url=router.ws_url,
            backend_token=TOKEN,
            status_interval=0.2,
        ),
        storage=StorageConfig(data_dir=folder / "data"),
        task=TaskConfig(**task),
    )


async def register(browsers: Browsers, router: Daemon, worker: str) -> str:
    browser = browsers.of_worker(worker)
    provider_data = {
        "worker_name": worker,
        "agent_registration_id": f"a-{worker}",
        "assignment_id": f"a-{worker}",
        "provider_type": "mock",
    }
    code, answer = await browser.post_json(
        f"{router.url}/request_agent",
        {"provider_data": provider_data, "client_timestamp": time.time()},
    )
    assert code == 200, answer
    browsers.registered(answer["data"], browser)
    agent_id = answer["data"]["agent_id"]
    assert isinstance(agent_id, str), answer
    return agent_id


async def submit(browsers: Browsers, router: Daemon, agent_id: str, answer: int) -> Any:
    return await browsers.of_agent(agent_id).post_json(
        f"{router.url}/submit_task", {"USED_AGENT_ID": agent_id, "final_data": {"answer": answer}}
    )


def browsers() -> Browsers:
    # Not persistent: a restarted router must not be reached through an old connection.
    return Browsers(HTTPConnectionPool(reactor, persistent=False))


@pytest_twisted.ensureDeferred
async def test_with_our_backend_connected_submitted_means_stored(
    tmp_path: Path, daemons: Daemons
) -> None:
    router = await daemons.start(router_config(tmp_path / "router"))
    backend = await daemons.start(backend_config(tmp_path / "backend", router))
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    assert router.hub.backend_confirms  # offered in the handshake, taken up in its alive
    workers = browsers()
    agent_id = await register(workers, router, "w1")
    assert await submit(workers, router, agent_id, 7) == (200, {"status": "Submitted!"})
    # No waiting: the answer came once the backend had committed it.
    [stored] = await backend.database.list_submissions(agent_id=agent_id)
    assert stored.data == {"answer": 7}
    journal = router.hub.journal
    assert journal is not None and journal.pending == {}


@pytest_twisted.ensureDeferred
async def test_what_the_router_acknowledged_while_its_backend_was_away_survives_its_restart(
    tmp_path: Path, daemons: Daemons
) -> None:
    router = await daemons.start(router_config(tmp_path / "router"))
    backend_settings = backend_config(tmp_path / "backend", router)
    backend = await daemons.start(backend_settings)
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    workers = browsers()
    agent_ids = [await register(workers, router, f"w{n}") for n in range(3)]
    await daemons.stop(backend)
    await wait_for(lambda: router.hub.backend is None, "the router to see the backend gone")

    for n, agent_id in enumerate(agent_ids[:2]):
        assert await submit(workers, router, agent_id, n) == (200, {"status": "Submitted!"})
    response = await workers.of_agent(agent_ids[2]).http.post(
        f"{router.url}/submit_task",
        data={"USED_AGENT_ID": agent_ids[2], "final_string_data": json.dumps({"answer": 2})},
        files={"upload": ("notes.txt", "text/plain", FileBodyProducer(BytesIO(b"my notes")))},
    )
    assert response.code == 200, await response.text()
    await response.content()
    router = await daemons.restart(router)  # what it held in memory is gone; not its journal
    journal = router.hub.journal
    assert journal is not None and len(journal.pending) == 3

    backend = await daemons.start(attrs.evolve(backend_settings))
    database = backend.database

    async def all_stored() -> bool:
        return all([await database.list_submissions(agent_id=a) for a in agent_ids])

    await wait_for(all_stored, "the journaled submissions to be stored")
    await wait_for(lambda: journal.pending == {}, "the backend to confirm them")
    for n, agent_id in enumerate(agent_ids):
        [stored] = await database.list_submissions(agent_id=agent_id)
        assert stored.data["answer"] == n
        assert await backend.status(agent_id) == Status.COMPLETED
    [kept] = stored.files  # the upload, fetched from the restarted router
    assert (database.data_dir / kept.stored_path).read_bytes() == b"my notes"


@pytest_twisted.ensureDeferred
async def test_a_submission_after_the_agent_expired_is_refused_to_the_worker(
    tmp_path: Path, daemons: Daemons
) -> None:
    router = await daemons.start(router_config(tmp_path / "router"))
    backend = await daemons.start(
        backend_config(tmp_path / "backend", router, assignment_duration=0.5)
    )
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    workers = browsers()
    agent_id = await register(workers, router, "late")

    def expired() -> bool:
        record = router.hub.agents.get(agent_id)
        return record is not None and record.status == Status.EXPIRED

    await wait_for(expired, "the agent to expire at the router")
    code, answer = await submit(workers, router, agent_id, 1)
    assert code == 409 and "expired" in answer["error"], answer
    assert await backend.database.list_submissions(agent_id=agent_id) == []


@pytest_twisted.ensureDeferred
async def test_live_pages_carry_on_after_both_router_and_backend_restarted(
    tmp_path: Path, daemons: Daemons
) -> None:
    """The restarted backend tells the restarted router the agents it carries on (the
    resume extension): a page that comes back carries on, and the seat of one that does
    not is held for resume_window, then ends (the router's grace rule)."""
    (tmp_path / "echo_task.py").write_text(LIVE_ECHO_TASK)
    router = await daemons.start(router_config(tmp_path / "router"))
    settings = backend_config(tmp_path / "backend", router, module=str(tmp_path / "echo_task.py"))
    settings = attrs.evolve(settings, backend=attrs.evolve(settings.backend, resume_window=1.0))
    backend = await daemons.start(settings)
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    workers = browsers()
    back, gone = await register(workers, router, "w1"), await register(workers, router, "w2")
    page = await workers.of_agent(back).open_socket(router.port)
    page.send(ALIVE, back)
    await wait_for(lambda: Status.IN_TASK in page.statuses(), "the page in task")
    await page.close()

    await daemons.stop(backend)
    router = await daemons.restart(router)
    backend = await daemons.start(settings)
    await wait_for(lambda: router.hub.agents.get(back) is not None, "the router to learn")

    page = await workers.of_agent(back).open_socket(router.port)
    try:
        page.send(ALIVE, back)
        await wait_for(lambda: Status.IN_TASK in page.statuses(), "the status again")
        page.send(MEPHISTO_BOUND_LIVE_UPDATE, back, {"update_id": "u-after", "text": "hi"})

        def echoed() -> bool:
            return any("echo" in p.data for p in page.of_type(CLIENT_BOUND_LIVE_UPDATE))

        await wait_for(echoed, "the task's echo after both restarts")
        assert all(EXPECT_SOCKET_WITHIN not in p.data for p in page.of_type(UPDATE_STATUS))
        await wait_for(lambda: backend.has_status(gone, Status.DISCONNECT), "the absent page's end")
        assert backend.agent(back).status == Status.IN_TASK
    finally:
        await page.close()


@pytest_twisted.ensureDeferred
async def test_a_page_that_submits_again_after_a_router_restart_is_answered_submitted(
    tmp_path: Path, daemons: Daemons
) -> None:
    """Its submission was stored, its answer lost with the router: the restarted router is
    told the agents that finished lately, so the page's second try is "Submitted!" (and
    kept once), not "unknown agent"."""
    router = await daemons.start(router_config(tmp_path / "router"))
    backend = await daemons.start(backend_config(tmp_path / "backend", router))
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    workers = browsers()
    agent_id = await register(workers, router, "w1")
    assert await submit(workers, router, agent_id, 1) == (200, {"status": "Submitted!"})
    old_link = router.hub.backend
    router = await daemons.restart(router)
    assert isinstance(old_link, RouterSocket)
    cast(ITCPTransport, old_link.transport).abortConnection()  # as the process's end would
    await wait_for(lambda: router.hub.backend is not None, "the backend to reconnect")
    await wait_for(lambda: router.hub.agents_told, "the backend to tell the new router")
    assert await submit(workers, router, agent_id, 1) == (200, {"status": "Submitted!"})
    assert len(await backend.database.list_submissions(agent_id=agent_id)) == 1


@pytest_twisted.ensureDeferred
async def test_after_an_embedded_restart_a_second_try_is_answered_submitted(
    daemons: Daemons,
) -> None:
    """The same for the embedded daemon: its new router is told the agents that finished
    shortly before the restart."""
    daemon = await daemons.embedded()
    workers = browsers()
    agent_id = await register(workers, daemon, "w1")
    assert await submit(workers, daemon, agent_id, 1) == (200, {"status": "Submitted!"})
    daemon = await daemons.restart(daemon)
    assert await submit(workers, daemon, agent_id, 1) == (200, {"status": "Submitted!"})
    assert len(await daemon.database.list_submissions(agent_id=agent_id)) == 1
