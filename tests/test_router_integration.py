"""The router over real loopback sockets: HTTP through treq, WebSockets through Autobahn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from twisted.internet.defer import ensureDeferred
from twisted.logger import capturedLogs, formatEvent
from twisted.web.client import FileBodyProducer

from architect.config import RouterConfig
from architect.protocol import (
    AGENT_DETAILS,
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    LOG_ERROR,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    SUBMIT_METADATA,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    CloseCode,
    Status,
)
from architect.router.hub import RouterHub
from tests.clients import Browser, PacketClient, open_socket, running_router, wait_for

TOKEN = "backend-secret"


@pytest.fixture
def router_config(tmp_path: Path) -> RouterConfig:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>task page</html>")
    (static / "app.js").write_text("console.log('task');")
    return RouterConfig(
        static_dir=static,
        task_config={"task_title": "Test task", "block_mobile": True},
        backend_token=TOKEN,
        request_timeout=0.5,
        disconnect_grace=0.3,
        heartbeat_timeout=15.0,
        max_body_bytes=50_000,
        max_json_bytes=50_000,
        max_message_bytes=10_000,
        upload_dir=tmp_path / "uploads",
    )


@pytest.fixture
def router(router_config: RouterConfig) -> Iterator[tuple[RouterHub, int]]:
    with running_router(router_config) as running:
        yield running


async def post_json(
    port: int, path: str, body: Any, browser: Browser | None = None
) -> tuple[int, Any]:
    """POST JSON as `browser` would (by default a browser on its first visit)."""
    return await (browser or Browser()).post_json(f"http://127.0.0.1:{port}{path}", body)


async def get(port: int, path: str, **kwargs: Any) -> tuple[int, bytes]:
    response = await treq.get(f"http://127.0.0.1:{port}{path}", **kwargs)
    return response.code, await response.content()


def upload(content: bytes) -> FileBodyProducer:
    """A file's content for treq's `files=`."""
    return FileBodyProducer(BytesIO(content))


async def connect_backend(port: int) -> PacketClient:
    backend = await open_socket(port, f"?token={TOKEN}")
    backend.send(ALIVE, MEPHISTO)
    return backend


async def register(
    port: int, backend: PacketClient, agent_id: str, browser: Browser | None = None
) -> dict[str, Any]:
    """A worker registers over HTTP, from `browser`; the backend answers with `agent_id`."""
    answer = ensureDeferred(
        post_json(port, "/request_agent", {"provider_data": {"worker_name": "w"}}, browser)
    )
    request = await backend.next(REGISTER_AGENT)
    backend.send(
        AGENT_DETAILS,
        request.subject_id,
        {"request_id": request.data["request_id"], "agent_id": agent_id, "worker_id": "w1"},
    )
    code, body = await answer
    assert code == 200
    return body


# --- plain endpoints ---


@pytest_twisted.ensureDeferred
async def test_plain_get_endpoints(router: tuple[RouterHub, int]) -> None:
    _, port = router
    assert await get(port, "/is_alive") == (200, b'{"status":"Alive!"}')  # as Node's res.json
    code, body = await get(port, "/get_timestamp")
    assert code == 200 and json.loads(body)["timestamp"] > 1_600_000_000_000
    code, body = await get(port, "/task_config.json?mephisto_task_version=2.0.3")
    assert json.loads(body) == {
        "task_title": "Test task",
        "block_mobile": True,
        "mephisto_task_version": "2.0.3",
    }


@pytest_twisted.ensureDeferred
async def test_static_files_are_served(router: tuple[RouterHub, int]) -> None:
    _, port = router
    assert await get(port, "/") == (200, b"<html>task page</html>")
    assert await get(port, "/app.js") == (200, b"console.log('task');")
    code, _ = await get(port, "/missing.js")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_version_mismatch_reaches_the_backend(router: tuple[RouterHub, int]) -> None:
    _, port = router
    backend = await connect_backend(port)
    await get(port, "/task_config.json?mephisto_task_version=1.9.0")
    warning = await backend.next(LOG_ERROR)
    assert warning.data["error_type"] == "version-mismatch"


# --- registration ---


@pytest_twisted.ensureDeferred
async def test_request_agent_without_backend_is_503(router: tuple[RouterHub, int]) -> None:
    _, port = router
    code, body = await post_json(port, "/request_agent", {"provider_data": {}})
    assert code == 503 and "backend" in body["error"]


@pytest.mark.parametrize("path", ["/request_agent", "/register_worker"])
@pytest_twisted.ensureDeferred
async def test_registration_round_trip(router: tuple[RouterHub, int], path: str) -> None:
    _, port = router
    backend = await connect_backend(port)
    answer = ensureDeferred(
        post_json(port, path, {"provider_data": {"worker_name": "bob"}, "client_timestamp": 5})
    )
    request = await backend.next(REGISTER_AGENT)
    assert request.data["provider_data"] == {"worker_name": "bob"}
    assert request.client_timestamp == 5
    backend.send(
        AGENT_DETAILS,
        request.subject_id,
        {"request_id": request.data["request_id"], "agent_id": "a-1", "init_task_data": {"q": 1}},
    )
    code, body = await answer
    assert code == 200
    assert body["packet_type"] == AGENT_DETAILS
    assert body["data"]["agent_id"] == "a-1" and body["data"]["init_task_data"] == {"q": 1}


@pytest_twisted.ensureDeferred
async def test_silent_backend_gives_504(router: tuple[RouterHub, int]) -> None:
    hub, port = router
    await connect_backend(port)
    await wait_for(lambda: hub.backend is not None)
    code, body = await post_json(port, "/request_agent", {"provider_data": {}})
    assert code == 504 and "0.5" in body["error"]


@pytest_twisted.ensureDeferred
async def test_onboarding_round_trip(router: tuple[RouterHub, int]) -> None:
    _, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "onboarding-7", worker)
    answer = ensureDeferred(
        post_json(
            port,
            "/submit_onboarding",
            {"provider_data": {"USED_AGENT_ID": "onboarding-7", "onboarding_data": {"ok": 1}}},
            worker,
        )
    )
    packet = await backend.next(SUBMIT_ONBOARDING)
    assert packet.subject_id == "onboarding-7"
    assert packet.data["onboarding_data"] == {"ok": 1}
    backend.send(AGENT_DETAILS, "x", {"request_id": packet.data["request_id"], "agent_id": "a-9"})
    code, body = await answer
    assert code == 200 and body["data"]["agent_id"] == "a-9"


# --- submissions ---


@pytest_twisted.ensureDeferred
async def test_json_submissions_reach_the_backend(router: tuple[RouterHub, int]) -> None:
    _, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    assert await post_json(
        port, "/submit_task", {"USED_AGENT_ID": "a-1", "final_data": {"answer": 42}}, worker
    ) == (200, {"status": "Submitted!"})
    assert await post_json(
        port, "/submit_metadata", {"USED_AGENT_ID": "a-1", "metadata": {"m": 1}}, worker
    ) == (200, {"status": "Submitted metadata"})
    assert await post_json(
        port, "/log_error", {"USED_AGENT_ID": "a-1", "error_data": {"e": "x"}}, worker
    ) == (200, {"status": "Error log sent!"})
    unit = await backend.next(SUBMIT_UNIT)
    assert (unit.subject_id, unit.data) == ("a-1", {"answer": 42})
    meta = await backend.next(SUBMIT_METADATA)
    assert meta.data == {"m": 1}
    error = await backend.next(LOG_ERROR)
    assert error.data == {"e": "x"}


@pytest_twisted.ensureDeferred
async def test_submission_while_backend_away_is_delivered_on_return(
    router: tuple[RouterHub, int],
) -> None:
    hub, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    await backend.close()
    await wait_for(lambda: hub.backend is None)
    code, _ = await post_json(
        port, "/submit_task", {"USED_AGENT_ID": "a-1", "final_data": {"x": 1}}, worker
    )
    assert code == 200
    again = await connect_backend(port)
    unit = await again.next(SUBMIT_UNIT)
    assert unit.data == {"x": 1}


@pytest_twisted.ensureDeferred
async def test_multipart_upload_and_backend_download(
    router: tuple[RouterHub, int], router_config: RouterConfig
) -> None:
    _, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    response = await worker.http.post(
        f"http://127.0.0.1:{port}/submit_task",
        data={"USED_AGENT_ID": "a-1", "final_string_data": json.dumps({"label": "cat"})},
        files={"photo": ("../../etc/cat.PNG", "image/png", upload(b"\x89PNG fake bytes"))},
    )
    assert response.code == 200
    unit = await backend.next(SUBMIT_UNIT)
    assert unit.data["label"] == "cat"
    (described,) = unit.data["files"]
    assert described["originalname"] == "cat.PNG" and described["size"] == 15
    stored = described["filename"]
    assert stored.endswith(".png") and "/" not in stored
    assert (router_config.upload_dir / stored).read_bytes() == b"\x89PNG fake bytes"

    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert await get(port, f"/download_file/{stored}", headers=headers) == (
        200,
        b"\x89PNG fake bytes",
    )
    code, _ = await get(port, f"/download_file/{stored}")
    assert code == 403
    code, _ = await get(port, f"/download_file/{stored}?token=wrong")
    assert code == 403
    for bad in ("..%2F..%2Fetc%2Fpasswd", "index.html", "0" * 32 + ".txt"):
        code, _ = await get(port, f"/download_file/{bad}", headers=headers)
        assert code == 404


# --- bad input ---


@pytest_twisted.ensureDeferred
async def test_malformed_and_oversized_bodies(router: tuple[RouterHub, int]) -> None:
    _, port = router
    backend = await connect_backend(port)
    await register(port, backend, "a-1")
    cases: list[tuple[str, Any, int]] = [
        ("/request_agent", b"{not json", 400),
        ("/request_agent", [1, 2], 400),
        ("/request_agent", {"provider_data": "x"}, 400),
        ("/submit_task", {"final_data": {}}, 400),
        ("/submit_task", {"USED_AGENT_ID": "a-1", "final_data": "text"}, 400),
        ("/submit_task", {"USED_AGENT_ID": "ghost", "final_data": {}}, 404),
        ("/submit_metadata", {"USED_AGENT_ID": 5, "metadata": {}}, 400),
        ("/submit_onboarding", {"provider_data": {"USED_AGENT_ID": "ghost"}}, 404),
        ("/log_error", b"\xff\xfe", 400),
        ("/submit_task", {"USED_AGENT_ID": "a-1", "final_data": {"big": "x" * 60_000}}, 413),
    ]
    for path, body, expected in cases:
        code, answer = await post_json(port, path, body)
        assert (path, code) == (path, expected)
        assert isinstance(answer["error"], str) and answer["error"]
    code, _ = await get(port, "/is_alive")
    assert code == 200
    # Nothing of the refused submissions reached the backend.
    await wait_for(lambda: True)
    assert [p for p in backend.pending() if p.packet_type == SUBMIT_UNIT] == []


# --- sockets ---


@pytest_twisted.ensureDeferred
async def test_backend_token_by_header_and_refusals(router: tuple[RouterHub, int]) -> None:
    hub, port = router
    by_header = await open_socket(port, headers={"Authorization": f"Bearer {TOKEN}"})
    by_header.send(ALIVE, MEPHISTO)
    await wait_for(lambda: hub.backend is not None)
    assert hub.backend is not None
    intruder = await open_socket(port, "?token=nope")
    intruder.send(ALIVE, MEPHISTO)
    code = await intruder.closed
    assert code == CloseCode.REFUSED == 4000
    assert hub.backend is not None and hub.backend.__class__.__name__ == "RouterSocket"


@pytest_twisted.ensureDeferred
async def test_a_replaced_backend_is_told_so_not_refused(router: tuple[RouterHub, int]) -> None:
    hub, port = router
    first = await connect_backend(port)
    await wait_for(lambda: hub.backend is not None)
    second = await connect_backend(port)
    code = await first.closed
    assert code == CloseCode.REPLACED != CloseCode.REFUSED
    await wait_for(lambda: hub.backend is not None and hub.link_agents == {})
    second.send(REQUEST_STATUSES, MEPHISTO)
    assert (await second.next(RETURN_STATUSES)).data == {}


@pytest_twisted.ensureDeferred
async def test_live_updates_heartbeats_and_statuses(router: tuple[RouterHub, int]) -> None:
    _, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    browser = await worker.open_socket(port)
    browser.send(ALIVE, "a-1")
    backend.send(UPDATE_STATUS, "a-1", {"status": Status.IN_TASK})
    status = await browser.next(UPDATE_STATUS)
    assert status.data == {"status": Status.IN_TASK}

    browser.send(HEARTBEAT, "a-1")
    beat = await browser.next(HEARTBEAT)
    assert beat.data["status"] == Status.IN_TASK and beat.data["last_mephisto_ping"] > 0

    browser.send(MEPHISTO_BOUND_LIVE_UPDATE, "a-1", {"update_id": "u1", "text": "hello"})
    up = await backend.next(MEPHISTO_BOUND_LIVE_UPDATE)
    assert up.subject_id == "a-1" and up.data["text"] == "hello"
    assert up.router_incoming_timestamp is not None
    backend.send(CLIENT_BOUND_LIVE_UPDATE, "a-1", {"update_id": "d1", "text": "hi"})
    down = await browser.next(CLIENT_BOUND_LIVE_UPDATE)
    assert down.data == {"update_id": "d1", "text": "hi"}


@pytest_twisted.ensureDeferred
async def test_bad_frames_are_dropped_and_the_socket_stays(router: tuple[RouterHub, int]) -> None:
    _, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    browser = await worker.open_socket(port)
    browser.send(ALIVE, "a-1")
    browser.send_raw(b"{broken")
    browser.send_raw(b"\x00\x01", binary=True)
    browser.send_raw(json.dumps({"packet_type": "bogus", "subject_id": "a-1"}).encode())
    browser.send(MEPHISTO_BOUND_LIVE_UPDATE, "other-agent", {"hijack": True})
    browser.send(MEPHISTO_BOUND_LIVE_UPDATE, "a-1", {"after": "garbage"})
    up = await backend.next(MEPHISTO_BOUND_LIVE_UPDATE)
    assert up.data == {"after": "garbage"}


@pytest_twisted.ensureDeferred
async def test_oversized_message_closes_only_that_socket(router: tuple[RouterHub, int]) -> None:
    _, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    await register(port, backend, "a-2", worker)
    big, small = await worker.open_socket(port), await worker.open_socket(port)
    big.send(ALIVE, "a-1")
    small.send(ALIVE, "a-2")
    with capturedLogs() as events:
        big.send(MEPHISTO_BOUND_LIVE_UPDATE, "a-1", {"blob": "x" * 20_000})
        code = await big.closed
        await wait_for(lambda: events, "a log line")
    assert code == 1009
    # Autobahn says why, once for the socket.
    assert "exceeds payload limit of 10000" in formatEvent(events[0])
    small.send(MEPHISTO_BOUND_LIVE_UPDATE, "a-2", {"still": "here"})
    up = await backend.next(MEPHISTO_BOUND_LIVE_UPDATE)
    assert up.data == {"still": "here"}


@pytest_twisted.ensureDeferred
async def test_closed_socket_becomes_disconnect_after_grace(router: tuple[RouterHub, int]) -> None:
    hub, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    browser = await worker.open_socket(port)
    browser.send(ALIVE, "a-1")
    backend.send(UPDATE_STATUS, "a-1", {"status": Status.IN_TASK})
    await browser.next(UPDATE_STATUS)
    await browser.close()
    await wait_for(lambda: hub.agents.statuses()["a-1"] == Status.DISCONNECT)
    backend.send(REQUEST_STATUSES, MEPHISTO)
    answer = await backend.next(RETURN_STATUSES)
    assert answer.data == {"a-1": Status.DISCONNECT}


@pytest_twisted.ensureDeferred
async def test_outbox_reaches_a_reconnecting_browser(router: tuple[RouterHub, int]) -> None:
    hub, port = router
    worker = Browser()  # one worker's browser, keeping its cookies
    backend = await connect_backend(port)
    await register(port, backend, "a-1", worker)
    first = await worker.open_socket(port)
    first.send(ALIVE, "a-1")
    await wait_for(lambda: hub.agents.records["a-1"].link is not None)
    await first.close()
    await wait_for(lambda: hub.agents.records["a-1"].link is None)
    backend.send(CLIENT_BOUND_LIVE_UPDATE, "a-1", {"update_id": "k", "n": 1})
    await wait_for(lambda: len(hub.agents.records["a-1"].outbox or ()) == 1)
    second = await worker.open_socket(port)
    second.send(ALIVE, "a-1")
    down = await second.next(CLIENT_BOUND_LIVE_UPDATE)
    assert down.data == {"update_id": "k", "n": 1}


@pytest.mark.parametrize("access_log", [True, False])
@pytest_twisted.ensureDeferred
async def test_access_log_can_be_turned_off(router_config: RouterConfig, access_log: bool) -> None:
    config = attrs.evolve(router_config, access_log=access_log)
    with running_router(config) as (_, port), capturedLogs() as events:
        assert (await get(port, "/is_alive"))[0] == 200
    lines = [formatEvent(event) for event in events]
    assert any('"GET /is_alive HTTP/1.1" 200' in line for line in lines) is access_log


@pytest_twisted.ensureDeferred
async def test_statuses_of_many_agents_never_break_the_backend_link(
    router: tuple[RouterHub, int], router_config: RouterConfig
) -> None:
    """More agents than one message of max_message_bytes can name: the answer comes in
    several packets, each under the limit, and the backend's socket stays open."""
    hub, port = router
    backend = await connect_backend(port)
    count = 3 * router_config.max_message_bytes // 40  # each agent takes ~50 bytes
    for n in range(count):
        backend.send(UPDATE_STATUS, f"agent-{n:08d}", {"status": Status.WAITING})
    await wait_for(lambda: len(hub.agents.records) == count, "the agents to be known")
    backend.send(REQUEST_STATUSES, MEPHISTO)
    got: dict[str, str] = {}
    while len(got) < count:
        got.update((await backend.next(RETURN_STATUSES)).data)
    assert got == {f"agent-{n:08d}": Status.WAITING for n in range(count)}
    assert not backend.has_closed and hub.backend is not None
