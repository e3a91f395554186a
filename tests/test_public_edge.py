"""The public edge, tried as an attacker would: real daemons on 127.0.0.1, real sockets.

Who may be the backend: whoever the config says, nobody else. An embedded daemon takes
no backend over its socket at all; a router alone needs the token, or an explicit
`trust_loopback = on`; a browser page (a handshake with an `Origin`) never.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers

from architect.config import ConfigError, load_config
from architect.protocol import AGENT_DETAILS, ALIVE, MEPHISTO, REGISTER_AGENT, CloseCode
from architect.router.uploads import UploadBounds, UploadFolder
from architect.storage import open_sqlite_database
from tests.clients import TIMEOUT, Browser, PacketClient, open_socket, reactor, wait_for
from tests.daemon import Daemon, Daemons, daemon_config
from tests.engines import on_every_engine

TOKEN = "edge-test-token"


async def request_agent(
    daemon: Daemon, worker: str, browser: Browser | None = None
) -> tuple[int, Any]:
    """A registration from `browser` (by default one on its first visit)."""
    return await (browser or Browser()).post_json(
        f"{daemon.url}/request_agent", {"provider_data": {"worker_name": worker}}
    )


async def refused(client: PacketClient) -> bool:
    """The router closed this socket as a refused backend (within the tests' timeout)."""
    closed = client.factory.closed
    closed.addTimeout(TIMEOUT, reactor)
    try:
        return await closed == CloseCode.REFUSED
    except TimeoutError:
        return False


@pytest_twisted.ensureDeferred
async def test_an_embedded_daemon_takes_no_backend_over_its_socket(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    for query in ("", f"?token={TOKEN}"):
        impostor = await open_socket(daemon.port, query)
        impostor.send(ALIVE, MEPHISTO)
        assert await refused(impostor)
    # The in-process backend is still the one answering, and hears of every worker.
    code, answer = await request_agent(daemon, "alice")
    assert code == 200 and answer["data"]["agent_id"] is not None
    assert daemon.agent(answer["data"]["agent_id"]).worker_id == answer["data"]["worker_id"]


@pytest_twisted.ensureDeferred
async def test_an_embedded_daemon_lets_nobody_download_the_uploads(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    name = "0123456789abcdef0123456789abcdef.txt"
    (tmp_path / "uploads" / name).write_bytes(b"a worker's file")
    response = await treq.get(f"{daemon.url}/download_file/{name}")
    assert response.code == 403
    assert b"a worker's file" not in await response.content()


def router_alone(folder: Path, **router: Any) -> Any:
    return daemon_config(folder, router=router, backend={"mode": "off"})


@pytest_twisted.ensureDeferred
async def test_a_router_alone_without_a_token_trusts_no_loopback_peer_by_default(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(router_alone(tmp_path))
    backend = await open_socket(daemon.port)
    backend.send(ALIVE, MEPHISTO)
    assert await refused(backend)
    assert daemon.hub.backend is None


@pytest_twisted.ensureDeferred
async def test_trust_loopback_lets_a_tokenless_backend_on_this_host_connect(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(router_alone(tmp_path, trust_loopback=True))
    backend = await open_socket(daemon.port)
    backend.send(ALIVE, MEPHISTO)
    await wait_for(lambda: daemon.hub.backend is not None, "the backend to be taken")
    answer = ensureDeferred(request_agent(daemon, "alice"))
    request = await backend.next(REGISTER_AGENT)
    backend.send(
        AGENT_DETAILS,
        request.subject_id,
        {"request_id": request.data["request_id"], "agent_id": "a-1", "worker_id": "w"},
    )
    code, details = await answer
    assert code == 200 and details["data"]["agent_id"] == "a-1"


@pytest_twisted.ensureDeferred
async def test_a_browser_page_is_never_the_backend_even_with_the_token(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(router_alone(tmp_path, backend_token=TOKEN, trust_loopback=True))
    page = await open_socket(daemon.port, f"?token={TOKEN}", {"Origin": "http://evil.example"})
    page.send(ALIVE, MEPHISTO)
    assert await refused(page)
    backend = await open_socket(daemon.port, f"?token={TOKEN}")
    backend.send(ALIVE, MEPHISTO)
    await wait_for(lambda: daemon.hub.backend is not None, "the real backend to be taken")


def test_architect_token_prints_a_strong_random_token() -> None:
    def token() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "architect.cli", "token"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    first, second = token(), token()
    assert first != second
    assert len(first) >= 43 and all(c.isalnum() or c in "-_" for c in first)


# --- the researcher's files ---


def write_ini(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "router.ini"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("layout", "problem"),
    [
        ("static_dir = .\n", "serves the config file"),
        ("static_dir = ..\n", "serves the config file"),
        ("static_dir = var\n[storage]\ndata_dir = var/data\n", "serves data_dir"),
        ("static_dir = var/data/page\n[storage]\ndata_dir = var/data\n", "is inside data_dir"),
        ("static_dir = site\nupload_dir = site/uploads\n", "serves upload_dir"),
        ("static_dir = up/page\nupload_dir = up\n", "is inside upload_dir"),
    ],
)
def test_a_frontend_folder_that_would_serve_private_files_stops_the_start(
    tmp_path: Path, layout: str, problem: str
) -> None:
    for folder in ("site", "var/data/page", "up/page"):
        (tmp_path / "run" / folder).mkdir(parents=True, exist_ok=True)
    path = write_ini(tmp_path / "run", "[router]\n" + layout)
    with pytest.raises(ConfigError, match=problem) as refused:
        load_config(path)
    assert "[router] static_dir" in str(refused.value)


def test_a_frontend_folder_of_its_own_beside_the_config_is_fine(tmp_path: Path) -> None:
    (tmp_path / "page").mkdir()
    config = load_config(write_ini(tmp_path, "[router]\nstatic_dir = page\n"))
    assert config.router.static_dir == tmp_path / "page"


@pytest_twisted.ensureDeferred
async def test_what_the_daemon_keeps_is_for_its_user_alone(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask: the modes must not depend on it
    try:
        database = await open_sqlite_database(tmp_path / "data")
        try:
            kept = await database.write_file("notes.txt", b"notes", "text/plain")
        finally:
            await database.close()
        uploads = UploadFolder(tmp_path / "uploads", UploadBounds(10**6, 10**7, 0))
        body = (
            b'--b\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\n'
            b"upload\r\n--b--\r\n"
        )
        kind = "multipart/form-data; boundary=b"
        [stored] = uploads.store_files(io.BytesIO(body), kind, "agent-1")
    finally:
        os.umask(old)

    def mode(path: Path) -> int:
        return path.stat().st_mode & 0o777

    data = tmp_path / "data"
    assert mode(data) == mode(data / "files") == mode(tmp_path / "uploads") == 0o700
    assert mode(data / "architect.sqlite3") == 0o600
    assert mode(data / kept.stored_path) == 0o600
    assert mode(tmp_path / "uploads" / stored["filename"]) == 0o600


# --- secrets ---


@pytest_twisted.ensureDeferred
async def test_no_token_or_worker_id_reaches_the_access_log(
    tmp_path: Path, daemons: Daemons
) -> None:
    secret = "s3cret-in-the-url"
    daemon = await daemons.start(router_alone(tmp_path, backend_token=secret))
    with capturedLogs() as events:
        downloaded = await treq.get(f"{daemon.url}/download_file/{'0' * 32}?token={secret}")
        await downloaded.content()
        page = await treq.get(
            f"{daemon.url}/is_alive",
            headers=Headers({"Referer": ["http://tasks.example/?worker_id=alice&assignment_id=1"]}),
        )
        await page.content()
        backend = await open_socket(daemon.port, f"?token={secret}")
        backend.send(ALIVE, MEPHISTO)
        await wait_for(lambda: daemon.hub.backend is not None, "the backend to be taken")
    lines = [formatEvent(event) for event in events]
    assert any("/download_file/" in line and " 404 " in line for line in lines), lines
    assert any("/is_alive" in line and "tasks.example" in line for line in lines), lines
    assert not [line for line in lines if secret in line or "alice" in line]


def test_the_systemd_unit_confines_the_daemon() -> None:
    unit = Path(__file__).resolve().parent.parent / "conf" / "architect.service"
    settings: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings["UMask"] == "0077"
    assert settings["ProtectSystem"] == "strict" and settings["StateDirectory"] == "architect"
    assert settings["ProtectHome"] == settings["PrivateDevices"] == "true"
    assert settings["NoNewPrivileges"] == "true"
    assert settings["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert settings["CapabilityBoundingSet"] == ""
    assert int(settings["LimitNOFILE"]) >= 65536
    assert "--config /etc/architect/router.ini" in settings["ExecStart"]


# --- uploads ---


async def submit_with_file(
    daemon: Daemon,
    agent_id: str,
    content: bytes,
    data: dict[str, Any] | None = None,
    browser: Browser | None = None,
) -> tuple[int, Any]:
    response = await (browser or Browser()).http.post(
        f"{daemon.url}/submit_task",
        data={"USED_AGENT_ID": agent_id, "final_string_data": json.dumps(data or {})},
        files={"file": ("notes.txt", "text/plain", FileBodyProducer(io.BytesIO(content)))},
    )
    return response.code, json.loads(await response.text())


def uploads_of(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "uploads").iterdir())


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_an_upload_for_no_agent_is_refused_before_anything_is_stored(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    code, answer = await submit_with_file(daemon, "nobody", b"x" * 10_000)
    assert code == 404 and "unknown agent" in answer["error"]
    assert uploads_of(tmp_path) == []


@pytest.mark.parametrize(
    ("router", "code"),
    [
        ({"max_upload_bytes_per_agent": 5_000}, 413),
        ({"max_upload_dir_bytes": 5_000}, 507),
        ({"min_free_disk_bytes": 10**18}, 507),  # more than any disk has free
    ],
)
@on_every_engine
@pytest_twisted.ensureDeferred
async def test_uploads_past_a_bound_are_refused_and_leave_nothing(
    tmp_path: Path, daemons: Daemons, router: dict[str, int], code: int
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path, router=router))
    browser = Browser()
    _, registered = await request_agent(daemon, "alice", browser)
    agent_id = registered["data"]["agent_id"]
    answered, answer = await submit_with_file(daemon, agent_id, b"x" * 10_000, browser=browser)
    assert answered == code and answer["error"]
    assert uploads_of(tmp_path) == []


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_a_kept_upload_leaves_the_upload_folder_and_stays_its_agents(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    alices, mallorys = Browser(), Browser()
    _, alice = await request_agent(daemon, "alice", alices)
    _, mallory = await request_agent(daemon, "mallory", mallorys)
    alice_id, mallory_id = alice["data"]["agent_id"], mallory["data"]["agent_id"]
    # Alice's upload is kept beside the database, and the router's copy is gone.
    code, _ = await submit_with_file(daemon, alice_id, b"alice's notes", browser=alices)
    assert code == 200
    await wait_for(lambda: uploads_of(tmp_path) == [], "the router's copy to go")
    [kept] = await daemon.database.list_submissions(agent_id=alice_id)
    [alice_file] = kept.files
    assert (daemon.database.data_dir / alice_file.stored_path).read_bytes() == b"alice's notes"
    # Mallory names Alice's upload (and an invented one) in a JSON submission: she gets
    # no file of Alice's, and her data is stored as she sent it.
    alice_upload = kept.data["files"][0]["filename"]
    names = [alice_upload, "0" * 32 + ".txt"]
    claimed = {"files": [{"filename": n, "originalname": "x.txt"} for n in names]}
    code, _ = await mallorys.post_json(
        f"{daemon.url}/submit_task", {"USED_AGENT_ID": mallory_id, "final_data": claimed}
    )
    assert code == 200
    [theirs] = await daemon.database.list_submissions(agent_id=mallory_id)
    assert theirs.data == claimed and theirs.files == ()


# --- idle connections ---


@pytest_twisted.ensureDeferred
async def test_a_socket_that_never_says_whom_it_speaks_for_is_closed(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path, router={"first_packet_timeout": 0.3}))
    silent = await open_socket(daemon.port)
    talking = await open_socket(daemon.port)
    talking.send(ALIVE, "agent-1")
    closed = silent.factory.closed
    closed.addTimeout(TIMEOUT, reactor)
    assert await closed == CloseCode.SILENT
    assert not talking.has_closed


# --- bodies ---


class _Raw(Protocol):
    """A client writing bytes of its own; `closed` fires with all it got once closed."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(self.received)


@pytest_twisted.ensureDeferred
async def test_a_body_too_large_is_refused_before_it_is_sent(
    tmp_path: Path, daemons: Daemons
) -> None:
    daemon = await daemons.start(daemon_config(tmp_path))
    client = _Raw()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.port), client)
    assert client.transport is not None
    # 256 MiB announced, a few bytes sent: the answer and the close come without the rest.
    client.transport.write(
        b"POST /submit_task HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 268435456\r\n\r\n"
        b'{"USED_AGENT_ID": "a'
    )
    client.closed.addTimeout(TIMEOUT, reactor)
    answer = await client.closed
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body) == {"error": "the body is larger than 1048576 bytes"}
