"""NUL characters from a browser, on both engines: PostgreSQL's text cannot hold one
(SQLite's can), so what a worker sends must come out the same whichever stores it.

The names and ids the database keeps in columns of their own (worker names, provider
types, registration ids, agent ids, upload names and types, live update ids) are refused
at the edge, a 400 with a JSON message (a packet over the socket: dropped). The task's
data (submissions, metadata, onboarding answers, live update contents) is kept as the
worker sent it, NUL and all: it is stored as JSON text, where a NUL is the six
characters of its escape, and read back the same on both engines (docs/protocol.md).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.web.http_headers import Headers

from architect.config import StorageConfig
from architect.protocol import ALIVE, MEPHISTO_BOUND_LIVE_UPDATE, FailureReason, Status
from architect.storage import Database, Direction, StorageError, open_database
from tests.admin_support import control, with_admin
from tests.backend_stack import BackendStack
from tests.clients import Browser, wait_for
from tests.daemon import Daemon, Daemons, daemon_config

DAEMONS_ON_EVERY_ENGINE = True

NUL = "\x00"


def provider(worker: str = "nora", **extra: Any) -> dict[str, Any]:
    return {"worker_name": worker, "provider_type": "mock", **extra}


async def start(daemons: Daemons, **task: Any) -> Daemon:
    return await daemons.start(with_admin(daemon_config(daemons.next_folder(), task=task)))


async def registered(daemon: Daemon, browser: Browser, worker: str = "nora") -> str:
    code, answer = await browser.post_json(
        f"{daemon.url}/request_agent", {"provider_data": provider(worker)}
    )
    assert code == 200 and answer["data"]["agent_id"], answer
    agent_id: str = answer["data"]["agent_id"]
    return agent_id


def refused_for_nul(code: int, answer: Any) -> bool:
    return code == 400 and "NUL" in answer["error"]


# --- names and ids: refused ---


@pytest.mark.parametrize(
    "provider_data",
    [
        provider(f"no{NUL}ra"),
        {"worker_name": "nora", "provider_type": f"mo{NUL}ck"},
        provider(agent_registration_id=f"reg{NUL}1"),
        provider(assignment_id=f"as{NUL}1"),
        provider(worker_id=f"nora{NUL}"),
    ],
    ids=["worker_name", "provider_type", "registration_id", "assignment_id", "worker_id"],
)
@pytest_twisted.ensureDeferred
async def test_a_registration_with_a_nul_in_its_ids_is_refused(
    daemons: Daemons, provider_data: dict[str, Any]
) -> None:
    daemon = await start(daemons)
    code, answer = await Browser().post_json(
        f"{daemon.url}/request_agent", {"provider_data": provider_data}
    )
    assert refused_for_nul(code, answer), answer
    assert await daemon.database.list_agents() == []
    # The daemon carries on: the same worker without the NUL is served.
    assert await registered(daemon, Browser())


@pytest.mark.parametrize("route", ["submit_task", "submit_metadata", "log_error"])
@pytest_twisted.ensureDeferred
async def test_an_agent_id_with_a_nul_is_refused(daemons: Daemons, route: str) -> None:
    daemon = await start(daemons)
    body = {"USED_AGENT_ID": f"a{NUL}", "final_data": {}, "metadata": {}, "error_data": {}}
    code, answer = await Browser().post_json(f"{daemon.url}/{route}", body)
    assert refused_for_nul(code, answer), answer


def multipart(fields: dict[str, str], file_name: bytes, file_type: bytes) -> bytes:
    parts = [
        f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
        + file_name
        + b'"\r\nContent-Type: '
        + file_type
        + b"\r\n\r\nthe file\r\n"
    )
    return b"".join(parts) + b"--b--\r\n"


@pytest.mark.parametrize(
    ("file_name", "file_type"),
    [
        (b"no\x00tes.txt", b"text/plain"),
        (b"notes.txt", b"text/pl\x00ain"),
    ],
    ids=["raw-nul-in-file-name", "raw-nul-in-content-type"],
)
@pytest_twisted.ensureDeferred
async def test_an_upload_with_a_nul_in_its_name_or_type_is_refused(
    daemons: Daemons, file_name: bytes, file_type: bytes
) -> None:
    daemon = await start(daemons)
    browser = Browser()
    agent_id = await registered(daemon, browser)
    body = multipart({"USED_AGENT_ID": agent_id}, file_name, file_type)
    response = await browser.http.post(
        f"{daemon.url}/submit_task",
        data=body,
        headers=Headers({"Content-Type": ["multipart/form-data; boundary=b"]}),
    )
    answer = json.loads(await response.text())
    assert refused_for_nul(response.code, answer), answer
    assert await daemon.database.list_submissions(agent_id=agent_id) == []
    assert list((daemon.config.router.upload_dir).iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_a_live_update_id_with_a_nul_is_dropped_and_the_socket_stays(
    daemons: Daemons,
) -> None:
    daemon = await start(daemons, name="chat", module="architect.demo.task")
    browser = Browser()
    agent_id = await registered(daemon, browser)
    socket = await browser.open_socket(daemon.port)
    try:
        socket.send(ALIVE, agent_id)
        await wait_for(lambda: Status.IN_TASK in socket.statuses(), "the page in task")
        socket.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": f"u{NUL}1", "text": "a"})
        socket.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u2", "text": f"b{NUL}"})

        async def browser_sent() -> list[tuple[str | None, Any]]:
            await daemon.settled()
            stored = await daemon.database.live_updates(agent_id, Direction.MEPHISTO_BOUND)
            return [(u.update_id, u.data["text"]) for u in stored]

        async def second_stored() -> bool:
            return "u2" in dict(await browser_sent())

        await wait_for(second_stored, "the second update stored")
        assert await browser_sent() == [("u2", f"b{NUL}")]
        # The router dropped the first: its backend never had it.
        metrics = daemon.hub.metrics
        assert metrics.value("architect_live_updates_total", direction="dropped") == 1
        assert metrics.value("architect_live_updates_total", direction="in") == 1
        assert not socket.has_closed
    finally:
        await socket.close()


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("block_worker", {"worker": f"x{NUL}"}),
        ("grant", {"worker": "x", "qualification": f"q{NUL}", "value": 1}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_admin_control_with_a_nul_in_a_name_is_refused(
    daemons: Daemons, name: str, body: dict[str, Any]
) -> None:
    daemon = await start(daemons)
    code, answer = await control(daemon, name, body)
    assert refused_for_nul(code, answer), answer


# --- the task's data: kept as sent ---


@pytest_twisted.ensureDeferred
async def test_task_data_keeps_its_nul_characters_on_every_engine(daemons: Daemons) -> None:
    daemon = await start(daemons)
    browser = Browser()
    agent_id = await registered(daemon, browser)
    data = {"text": f"a{NUL}b", f"key{NUL}": [NUL, {"deep": f"{NUL}{NUL}"}]}
    code, answer = await browser.post_json(
        f"{daemon.url}/submit_metadata", {"USED_AGENT_ID": agent_id, "metadata": data}
    )
    assert code == 200, answer
    code, answer = await browser.post_json(
        f"{daemon.url}/submit_task", {"USED_AGENT_ID": agent_id, "final_data": data}
    )
    assert code == 200, answer
    stored = await daemon.database.list_submissions(agent_id=agent_id)
    assert [s.data for s in stored] == [data, data]
    code, answer = await browser.post_json(
        f"{daemon.url}/log_error", {"USED_AGENT_ID": agent_id, "error_data": {"m": NUL}}
    )
    assert code == 200, answer


# --- the backend, whichever router sent it (a foreign one does not check) ---


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=Clock())
    yield database
    await database.close()


class Uploads:
    """A router's uploads, as a remote backend fetches them: every file is there."""

    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        return succeed(b"content")

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        return succeed(None)


@pytest_twisted.ensureDeferred
async def test_the_backend_refuses_what_a_router_let_through(db: Database) -> None:
    stack = await BackendStack.make(db, [{"n": 0}, {"n": 1}], files=Uploads())
    with capturedLogs() as events:
        await refused_then_kept(stack, db)
    # Each refused as expected (a warning), none found out by a failing write.
    assert [e for e in events if e.get("log_failure") is not None] == []


async def refused_then_kept(stack: BackendStack, db: Database) -> None:
    refused = await stack.register("nora", f"reg{NUL}")
    assert (refused["agent_id"], refused["failure_reason"]) == (None, FailureReason.NO_WORK)
    assert await db.list_agents() == []
    agent_id = (await stack.register("nora", "reg-1"))["agent_id"]
    await stack.live_update(agent_id, {"update_id": f"u{NUL}", "text": "dropped"})
    await stack.live_update(agent_id, {"update_id": "u2", "text": f"kept{NUL}"})
    stored = await db.live_updates(agent_id, Direction.MEPHISTO_BOUND)
    assert [(u.update_id, u.data["text"]) for u in stored] == [("u2", f"kept{NUL}")]
    files = [
        {"filename": "a.txt", "originalname": f"a{NUL}.txt", "mimetype": "text/plain"},
        {"filename": "b.txt", "originalname": "b.txt", "mimetype": f"text/{NUL}"},
        {"filename": "c.txt", "originalname": "c.txt", "mimetype": "text/plain"},
    ]
    await stack.submit(agent_id, {"files": files})
    [submission] = await db.list_submissions(agent_id=agent_id)
    assert submission.data == {"files": files}  # described as sent; only c.txt kept
    assert [f.original_name for f in submission.files] == ["c.txt"]


# --- the storage engines: the last guard, the same on both ---


@pytest_twisted.ensureDeferred
async def test_neither_engine_stores_text_holding_a_nul(db: Database) -> None:
    with pytest.raises(StorageError, match="NUL"):
        await db.find_or_create_worker("mock", f"no{NUL}ra")
    with pytest.raises(StorageError, match="NUL"):
        await db.find_or_create_worker(f"mo{NUL}ck", "nora")
    assert await db.list_workers() == []
    # JSON text holds a NUL as its escape: the value comes back as it was.
    await db.find_or_create_task_run("run", {"note": f"a{NUL}b"})
    again = await db.get_task_run("run")
    assert again is not None and again.config == {"note": f"a{NUL}b"}
