"""The router's HTTP edge in memory: RouterWeb's real Site, no socket (tests/memory_http.py).

What the edge decides by itself: the body limit (413), JSON and multipart parsing
(400), stored uploads and what reaches the hub, who may download an upload (403/404),
and how the hub's refusals are answered (503, 504), always as a JSON error. The same
routes over real loopback sockets are in test_router_integration.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from architect.config import RouterConfig
from architect.protocol import (
    AGENT_DETAILS,
    LOG_ERROR,
    MEPHISTO,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    SUBMIT_METADATA,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    Handled,
    Outcome,
    Packet,
)
from architect.router.hub import RouterHub
from architect.router.web import RouterWeb
from architect.upload_names import new_upload_name
from tests.fakes import FakeLink
from tests.memory_http import ELSEWHERE, LOOPBACK, Body, MemoryHTTP, Reply

TOKEN = "backend-secret"
LIMIT = 2_000  # max_body_bytes and max_json_bytes (tests/test_request_intake.py: apart)
UPLOAD = "0123456789abcdef0123456789abcdef.txt"  # a name as the router gives uploads
BOUNDARY = "xYzZY-boundary"


class Edge:
    """A RouterWeb over a hub on a task.Clock, reached in memory from loopback or elsewhere;
    a fake backend link, connected or not."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.config = RouterConfig(
            **{
                "backend_token": TOKEN,
                "max_body_bytes": LIMIT,
                "max_json_bytes": LIMIT,
                "request_timeout": 5.0,
                "upload_dir": tmp_path / "uploads",
                **settings,
            }
        )
        self.clock = Clock()
        self.hub = RouterHub(self.clock, self.config)
        self.web = RouterWeb(self.hub, self.config)
        self.local = self.client(LOOPBACK)
        self.remote = self.client(ELSEWHERE)
        self.backend = FakeLink("backend")

    def client(self, host: str) -> MemoryHTTP:
        return MemoryHTTP(self.web.site(), host)

    def connect_backend(self, link: Any = None) -> None:
        self.hub.backend_connected(link or self.backend)

    def backend_tells_its_agents(self) -> None:
        """The backend asks for statuses twice: by the second it has pushed what the
        router's first answer lacked (a restarted router knows its agents from then on)."""
        for _ in range(2):
            self.hub.link_packet(self.backend, Packet(REQUEST_STATUSES, MEPHISTO))

    def answer_registration(self, agent_id: str) -> None:
        """The backend answers the last register_agent it was sent: `agent_id` it is."""
        request = self.backend.of_type(REGISTER_AGENT)[-1]
        details = {"request_id": request.data["request_id"], "agent_id": agent_id}
        self.hub.link_packet(self.backend, Packet(AGENT_DETAILS, request.subject_id, details))

    async def register(self, agent_id: str) -> None:
        """A worker registers; the backend names the agent `agent_id`."""
        self.connect_backend()
        sent = self.local.send_post("/request_agent", json_body({"provider_data": {}}))
        self.local.flush()
        self.answer_registration(agent_id)
        reply = await self.local.reply(sent)
        assert reply.code == 200 and reply.json()["data"]["agent_id"] == agent_id

    def sent(self, packet_type: str) -> list[Packet]:
        return self.backend.of_type(packet_type)

    def uploads(self) -> list[str]:
        folder = self.config.upload_dir
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def edge(tmp_path: Path) -> Edge:
    return Edge(tmp_path)


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def assert_json_error(reply: Reply, code: int) -> str:
    """The reply is the router's JSON error with this code; its message."""
    assert reply.code == code, (reply.code, reply.body)
    assert reply.content_type == "application/json"
    answer = reply.json()
    assert list(answer) == ["error"] and isinstance(answer["error"], str) and answer["error"]
    message: str = answer["error"]
    return message


def padded_submission(size: int) -> bytes:
    """A JSON /submit_task body of exactly `size` bytes."""
    empty = json_body({"USED_AGENT_ID": "a-1", "final_data": {"pad": ""}})
    body = json_body({"USED_AGENT_ID": "a-1", "final_data": {"pad": "x" * (size - len(empty))}})
    assert len(body) == size
    return body


# --- multipart bodies, written as a browser writes them ---


def field(name: str, value: str) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def file_part(name: str, filename: str, content_type: str, content: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    )
    return head.encode() + content + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


# --- the body limit ---


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest_twisted.ensureDeferred
async def test_a_body_over_max_body_bytes_is_413_and_reaches_no_one(
    edge: Edge, chunked: bool
) -> None:
    await edge.register("a-1")
    at_limit = await edge.local.post("/submit_task", Body(padded_submission(LIMIT), chunked))
    assert (at_limit.code, at_limit.json()) == (200, {"status": "Submitted!"})
    [kept] = edge.sent(SUBMIT_UNIT)

    over = Body(padded_submission(LIMIT + 1), chunked, piece=300)  # chunked: 7 chunks
    message = assert_json_error(await edge.local.post("/submit_task", over), 413)
    assert message == f"the body is larger than {LIMIT} bytes"
    form = multipart(
        field("USED_AGENT_ID", "a-1"),
        field("final_string_data", "{}"),
        file_part("photo", "big.png", "image/png", b"x" * LIMIT),
    )
    assert_json_error(await edge.local.post("/submit_task", Body(form, chunked), MULTIPART), 413)
    big = Body(json_body({"provider_data": {"pad": "x" * LIMIT}}), chunked)
    assert_json_error(await edge.local.post("/request_agent", big), 413)
    # Nothing of the refused bodies went on, nor was any upload kept.
    assert edge.sent(SUBMIT_UNIT) == [kept]
    assert len(edge.sent(REGISTER_AGENT)) == 1  # the registration of a-1
    assert edge.uploads() == []
    # The router goes on serving.
    assert (await edge.local.get("/is_alive")).code == 200


# --- malformed bodies ---


@pytest.mark.parametrize(
    "path",
    [
        "/request_agent",
        "/register_worker",
        "/submit_onboarding",
        "/submit_task",
        "/submit_metadata",
        "/log_error",
    ],
)
@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"],
    ids=["broken", "empty", "not-utf8", "list", "string", "null"],
)
@pytest_twisted.ensureDeferred
async def test_a_body_that_is_not_a_json_object_is_400(edge: Edge, path: str, body: bytes) -> None:
    edge.connect_backend()
    message = assert_json_error(await edge.local.post(path, body), 400)
    assert message == "the body must be a JSON object"
    assert edge.backend.sent == []


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/request_agent", {"provider_data": "x"}, "provider_data must be a JSON object"),
        ("/request_agent", {}, "provider_data must be a JSON object"),
        ("/submit_onboarding", {"provider_data": {}}, "USED_AGENT_ID must be a non-empty string"),
        ("/submit_task", {"final_data": {}}, "USED_AGENT_ID must be a non-empty string"),
        ("/submit_task", {"USED_AGENT_ID": "", "final_data": {}}, "USED_AGENT_ID must be a"),
        ("/submit_task", {"USED_AGENT_ID": "a-1", "final_data": "x"}, "final_data must be a JSON"),
        ("/submit_task", {"USED_AGENT_ID": "a-1"}, "final_data must be a JSON object"),
        ("/submit_metadata", {"USED_AGENT_ID": 5, "metadata": {}}, "USED_AGENT_ID must be a"),
        ("/submit_metadata", {"USED_AGENT_ID": "a-1", "metadata": []}, "metadata must be a JSON"),
        ("/log_error", {"error_data": "x"}, "USED_AGENT_ID must be a non-empty string"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_json_object_without_the_fields_a_route_needs_is_400(
    edge: Edge, path: str, body: dict[str, Any], message: str
) -> None:
    await edge.register("a-1")
    edge.backend.sent.clear()
    assert assert_json_error(await edge.local.post_json(path, body), 400).startswith(message)
    assert edge.backend.sent == []


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data", multipart(field("USED_AGENT_ID", "a-1")), "multipart body without"),
        (MULTIPART, multipart(field("final_string_data", "{}")), "USED_AGENT_ID must be a"),
        (
            MULTIPART,
            multipart(field("USED_AGENT_ID", "a-1"), field("final_string_data", "{oops")),
            "final_string_data must be JSON text",
        ),
        (
            MULTIPART,
            multipart(field("USED_AGENT_ID", "a-1"), field("final_string_data", "[1]")),
            "final_string_data must hold a JSON object",
        ),
        (MULTIPART, field("USED_AGENT_ID", "a-1")[:-2], "malformed multipart body"),
    ],
    ids=["no-boundary", "no-agent", "not-json", "not-an-object", "truncated"],
)
@pytest_twisted.ensureDeferred
async def test_a_malformed_multipart_submission_is_400(
    edge: Edge, content_type: str, body: bytes, message: str
) -> None:
    await edge.register("a-1")
    reply = await edge.local.post("/submit_task", body, content_type)
    assert assert_json_error(reply, 400).startswith(message)
    assert edge.sent(SUBMIT_UNIT) == []


@pytest_twisted.ensureDeferred
async def test_a_submission_for_an_agent_the_router_does_not_know_is_404(edge: Edge) -> None:
    edge.connect_backend()
    edge.backend_tells_its_agents()
    as_json = json_body({"USED_AGENT_ID": "ghost", "final_data": {}})
    assert_json_error(await edge.local.post("/submit_task", as_json), 404)
    form = multipart(field("USED_AGENT_ID", "ghost"), field("final_string_data", "{}"))
    assert_json_error(await edge.local.post("/submit_task", form, MULTIPART), 404)
    onboarding = {"provider_data": {"USED_AGENT_ID": "ghost", "onboarding_data": {}}}
    assert_json_error(await edge.local.post_json("/submit_onboarding", onboarding), 404)
    assert [p.packet_type for p in edge.backend.sent] == [RETURN_STATUSES] * 2  # nothing else


@pytest_twisted.ensureDeferred
async def test_a_restarted_router_holds_a_submission_until_its_backend_told_its_agents(
    edge: Edge,
) -> None:
    """Right after a router restart no agent is known: a page's submission waits for the
    backend to push its agents' statuses, rather than being told 404."""
    body = json_body({"USED_AGENT_ID": "a-1", "final_data": {"answer": 1}})
    form = multipart(field("USED_AGENT_ID", "a-1"), field("final_string_data", "{}"))
    json_sent = edge.local.send_post("/submit_task", body)
    form_sent = edge.local.send_post("/submit_task", form, MULTIPART)
    edge.local.flush()
    assert not json_sent.called and not form_sent.called
    edge.connect_backend()
    edge.hub.link_packet(edge.backend, Packet(REQUEST_STATUSES, MEPHISTO))
    edge.hub.link_packet(edge.backend, Packet(UPDATE_STATUS, "a-1", {"status": "in task"}))
    edge.hub.link_packet(edge.backend, Packet(REQUEST_STATUSES, MEPHISTO))
    assert (await edge.local.reply(json_sent)).json() == {"status": "Submitted!"}
    assert (await edge.local.reply(form_sent)).json() == {"status": "Submitted!"}
    assert [p.data for p in edge.sent(SUBMIT_UNIT)] == [{"answer": 1}, {}]


@pytest_twisted.ensureDeferred
async def test_a_held_submission_for_an_agent_nobody_names_is_404_after_the_timeout(
    edge: Edge,
) -> None:
    sent = edge.local.send_post(
        "/submit_task", json_body({"USED_AGENT_ID": "ghost", "final_data": {}})
    )
    edge.local.flush()
    edge.clock.advance(edge.config.request_timeout - 0.1)
    assert not sent.called
    edge.clock.advance(0.1)
    assert_json_error(await edge.local.reply(sent), 404)
    assert edge.clock.getDelayedCalls() == []


# --- multipart submissions: uploads are stored, their description goes to the hub ---


@pytest_twisted.ensureDeferred
async def test_a_multipart_submission_stores_its_files_and_describes_them_to_the_backend(
    edge: Edge,
) -> None:
    await edge.register("a-1")
    photo = b"\x89PNG fake bytes"
    form = multipart(
        field("USED_AGENT_ID", "a-1"),
        field("final_string_data", json.dumps({"label": "cat", "sure": True})),
        file_part("photo", "../../etc/cat.PNG", "image/png", photo),
        file_part("notes", "notes", "text/plain", b"no extension"),
    )
    reply = await edge.local.post("/submit_task", form, MULTIPART)
    assert (reply.code, reply.json()) == (200, {"status": "Submitted!"})

    [packet] = edge.sent(SUBMIT_UNIT)
    assert packet.subject_id == "a-1"
    files = packet.data.pop("files")
    assert packet.data == {"label": "cat", "sure": True}
    assert [{k: v for k, v in f.items() if k != "filename"} for f in files] == [
        {"fieldname": "photo", "originalname": "cat.PNG", "mimetype": "image/png", "size": 15},
        {"fieldname": "notes", "originalname": "notes", "mimetype": "text/plain", "size": 12},
    ]
    # Stored under names of the router's own: a random stem, the extension lowercased.
    stored = [f["filename"] for f in files]
    assert re.fullmatch(r"[0-9a-f]{32}\.png", stored[0])
    assert re.fullmatch(r"[0-9a-f]{32}", stored[1])
    assert edge.uploads() == sorted(stored)
    folder = edge.config.upload_dir
    assert (folder / stored[0]).read_bytes() == photo
    assert (folder / stored[1]).read_bytes() == b"no extension"
    # The backend fetches them by those names.
    downloaded = await edge.local.get(f"/download_file/{stored[0]}?token={TOKEN}")
    assert (downloaded.code, downloaded.body) == (200, photo)


@pytest_twisted.ensureDeferred
async def test_multipart_metadata_and_a_submission_without_files(edge: Edge) -> None:
    await edge.register("a-1")
    form = multipart(field("USED_AGENT_ID", "a-1"), field("metadata", '{"feedback": "fine"}'))
    reply = await edge.local.post("/submit_metadata", form, MULTIPART)
    assert (reply.code, reply.json()) == (200, {"status": "Submitted metadata"})
    [meta] = edge.sent(SUBMIT_METADATA)
    assert (meta.subject_id, meta.data) == ("a-1", {"feedback": "fine"})

    bare = multipart(field("USED_AGENT_ID", "a-1"))  # no final_string_data: an empty object
    assert (await edge.local.post("/submit_task", bare, MULTIPART)).code == 200
    [unit] = edge.sent(SUBMIT_UNIT)
    assert unit.data == {}
    assert edge.uploads() == []


@pytest_twisted.ensureDeferred
async def test_json_submissions_reach_the_hub_as_sent(edge: Edge) -> None:
    await edge.register("a-1")
    submission = {"USED_AGENT_ID": "a-1", "final_data": {"answer": 42}, "client_timestamp": 7}
    assert (await edge.local.post_json("/submit_task", submission)).code == 200
    error = {"USED_AGENT_ID": "a-1", "error_data": {"e": "x"}, "client_timestamp": "soon"}
    reply = await edge.local.post_json("/log_error", error)
    assert (reply.code, reply.json()) == (200, {"status": "Error log sent!"})
    [unit] = edge.sent(SUBMIT_UNIT)
    assert (unit.subject_id, unit.data, unit.client_timestamp) == ("a-1", {"answer": 42}, 7.0)
    [logged] = edge.sent(LOG_ERROR)
    # As Mephisto's routers forward it: the posted error_data is the packet's data.
    assert (logged.data, logged.client_timestamp) == ({"e": "x"}, None)


@pytest.mark.parametrize(
    ("error_data", "data"),
    [
        ("just text", {"error_data": "just text"}),  # a packet's data is an object
        ([1, 2], {"error_data": [1, 2]}),
        (None, {}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_an_error_log_that_is_not_an_object_is_forwarded_in_one(
    edge: Edge, error_data: Any, data: dict[str, Any]
) -> None:
    await edge.register("a-1")
    reply = await edge.local.post_json(
        "/log_error", {"USED_AGENT_ID": "a-1", "error_data": error_data}
    )
    assert reply.code == 200
    [logged] = edge.sent(LOG_ERROR)
    assert logged.data == data


@pytest_twisted.ensureDeferred
async def test_an_error_log_for_an_agent_the_router_does_not_know_is_404(edge: Edge) -> None:
    edge.connect_backend()
    body = {"USED_AGENT_ID": "ghost", "error_data": {"e": "x"}}
    assert "unknown agent" in assert_json_error(await edge.local.post_json("/log_error", body), 404)
    assert edge.backend.sent == []


# --- who may download an upload ---


@pytest.mark.parametrize(
    ("client", "token", "code"),
    [
        (LOOPBACK, f"?token={TOKEN}", 200),
        (LOOPBACK, "bearer", 200),
        (ELSEWHERE, f"?token={TOKEN}", 200),  # the token is enough, from anywhere
        (ELSEWHERE, "bearer", 200),
        (LOOPBACK, "", 403),  # with a token configured, loopback alone is not enough
        (LOOPBACK, "?token=wrong", 403),
        (ELSEWHERE, "", 403),
        (ELSEWHERE, "?token=wrong", 403),
        (ELSEWHERE, "?token=", 403),
    ],
)
@pytest_twisted.ensureDeferred
async def test_downloads_with_a_backend_token_need_it(
    edge: Edge, client: str, token: str, code: int
) -> None:
    edge.config.upload_dir.joinpath(UPLOAD).write_bytes(b"uploaded")
    headers = {"Authorization": f"Bearer {TOKEN}"} if token == "bearer" else None
    query = "" if token == "bearer" else token
    reply = await edge.client(client).get(f"/download_file/{UPLOAD}{query}", headers)
    if code == 200:
        assert (reply.code, reply.body) == (200, b"uploaded")
    else:
        assert assert_json_error(reply, 403) == "only the backend may download uploaded files"


@pytest.mark.parametrize(
    ("trust_loopback", "client", "token", "code"),
    [
        (True, LOOPBACK, "", 200),  # no token, loopback trusted: a backend on this machine
        (True, LOOPBACK, "?token=anything", 200),
        (True, ELSEWHERE, "", 403),
        (True, ELSEWHERE, "?token=anything", 403),
        (False, LOOPBACK, "", 403),  # no token and loopback not trusted: nobody
        (False, LOOPBACK, "?token=anything", 403),
        (False, ELSEWHERE, "", 403),
    ],
)
@pytest_twisted.ensureDeferred
async def test_downloads_without_a_backend_token_are_for_a_trusted_loopback_only(
    tmp_path: Path, trust_loopback: bool, client: str, token: str, code: int
) -> None:
    edge = Edge(tmp_path, backend_token="", trust_loopback=trust_loopback)
    edge.config.upload_dir.joinpath(UPLOAD).write_bytes(b"uploaded")
    reply = await edge.client(client).get(f"/download_file/{UPLOAD}{token}")
    if code == 200:
        assert (reply.code, reply.body) == (200, b"uploaded")
    else:
        assert_json_error(reply, 403)


@pytest.mark.parametrize(
    "name",
    [
        "0" * 32 + ".txt",  # a name the router could have given, but did not
        "index.html",
        "0123456789ABCDEF0123456789ABCDEF.txt",  # not our (lowercase) stem
        "0123456789abcdef0123456789abcdef.toolongextension",
        "0123456789abcdef0123456789abcdef.a-b",
    ],
)
@pytest_twisted.ensureDeferred
async def test_downloads_of_bad_or_missing_names_are_404_and_403_before_that(
    edge: Edge, name: str
) -> None:
    folder = edge.config.upload_dir
    folder.joinpath(UPLOAD).write_bytes(b"uploaded")
    folder.joinpath("index.html").write_bytes(b"not an upload")
    reply = await edge.local.get(f"/download_file/{name}?token={TOKEN}")
    assert assert_json_error(reply, 404).startswith("no uploaded file named")
    # Without the token nothing is said about which names exist.
    assert_json_error(await edge.remote.get(f"/download_file/{name}"), 403)


@pytest_twisted.ensureDeferred
async def test_a_name_that_climbs_out_of_the_upload_folder_is_not_served(
    edge: Edge, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_bytes(b"the secret")
    edge.config.upload_dir.joinpath(UPLOAD).write_bytes(b"the upload")
    for name in ("..%2Fsecret.txt", "..%2F..%2Fetc%2Fpasswd", f"..%2Fuploads%2F{UPLOAD}"):
        reply = await edge.local.get(f"/download_file/{name}?token={TOKEN}")
        assert assert_json_error(reply, 404).startswith("no uploaded file named '../")
        assert b"the secret" not in reply.body and b"the upload" not in reply.body


@pytest_twisted.ensureDeferred
async def test_with_a_task_frontend_no_path_climbs_out_of_it(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    static.joinpath("index.html").write_text("the task page")
    (tmp_path / "secret.txt").write_bytes(b"the secret")
    edge = Edge(tmp_path, static_dir=static)
    assert (await edge.local.get("/")).body == b"the task page"
    for path, code in [
        ("/..%2Fsecret.txt", 404),
        ("/%2E%2E/secret.txt", 404),
        ("/download_file/..%2Fsecret.txt", 403),  # the download route's: not the backend
    ]:
        reply = await edge.local.get(path)
        assert reply.code == code and b"the secret" not in reply.body, path


@pytest_twisted.ensureDeferred
async def test_a_folder_of_the_frontend_without_an_index_is_not_listed(tmp_path: Path) -> None:
    static = tmp_path / "static"
    (static / "images").mkdir(parents=True)
    (static / "images" / "cat.png").write_bytes(b"png")
    edge = Edge(tmp_path, static_dir=static)
    for path in ("/", "/images/"):
        reply = await edge.remote.get(path)
        assert_json_error(reply, 404)
        assert b"cat.png" not in reply.body, path
    assert (await edge.remote.get("/images/cat.png")).body == b"png"


@pytest_twisted.ensureDeferred
async def test_the_router_names_no_software_version(edge: Edge) -> None:
    for reply in (await edge.remote.get("/is_alive"), await edge.remote.get("/nowhere")):
        assert reply.headers.getRawHeaders(b"server") == [b"Architect"]


@pytest_twisted.ensureDeferred
async def test_only_the_backend_discards_an_upload_and_only_naming_its_agent(edge: Edge) -> None:
    name = new_upload_name("agent-1", "notes.txt")
    path = edge.config.upload_dir / name
    path.write_bytes(b"notes")

    async def delete(client: MemoryHTTP, query: str) -> Reply:
        return await client.reply(client.send("DELETE", f"/download_file/{name}{query}"))

    assert_json_error(await delete(edge.remote, "?agent=agent-1"), 403)  # no token
    assert_json_error(await delete(edge.remote, "?token=wrong&agent=agent-1"), 403)
    assert_json_error(await delete(edge.remote, f"?token={TOKEN}"), 400)  # whose?
    assert_json_error(await delete(edge.remote, f"?token={TOKEN}&agent=agent-2"), 404)
    assert path.exists()
    kept = await delete(edge.remote, f"?token={TOKEN}&agent=agent-1")
    assert kept.code == 200 and kept.json() == {"status": "Discarded"}
    assert not path.exists()


@pytest_twisted.ensureDeferred
async def test_an_uploaded_page_is_downloaded_as_bytes_never_shown(edge: Edge) -> None:
    name = "0123456789abcdef0123456789abcdef.html"
    edge.config.upload_dir.joinpath(name).write_bytes(b"<script>alert(1)</script>")
    reply = await edge.local.get(f"/download_file/{name}?token={TOKEN}")
    assert reply.code == 200 and reply.body == b"<script>alert(1)</script>"
    assert reply.headers.getRawHeaders(b"content-type") == [b"application/octet-stream"]
    assert reply.headers.getRawHeaders(b"content-disposition") == [b"attachment"]
    assert reply.headers.getRawHeaders(b"x-content-type-options") == [b"nosniff"]


@pytest_twisted.ensureDeferred
async def test_a_folder_named_as_an_upload_is_not_served(edge: Edge) -> None:
    name = "0123456789abcdef0123456789abcdef"
    edge.config.upload_dir.joinpath(name).mkdir()
    assert_json_error(await edge.local.get(f"/download_file/{name}?token={TOKEN}"), 404)


# --- no backend, a silent one, one that cannot store ---


@pytest_twisted.ensureDeferred
async def test_registration_without_a_backend_is_503(edge: Edge) -> None:
    for path in ("/request_agent", "/register_worker"):
        reply = await edge.local.post_json(path, {"provider_data": {"worker_name": "w"}})
        assert "no backend is connected" in assert_json_error(reply, 503)


@pytest_twisted.ensureDeferred
async def test_onboarding_while_the_backend_is_away_is_503(edge: Edge) -> None:
    await edge.register("onboarding-1")
    edge.hub.link_lost(edge.backend)
    body = {"provider_data": {"USED_AGENT_ID": "onboarding-1", "onboarding_data": {"a": 1}}}
    assert_json_error(await edge.local.post_json("/submit_onboarding", body), 503)
    assert edge.sent(SUBMIT_ONBOARDING) == []


@pytest_twisted.ensureDeferred
async def test_submissions_while_the_backend_is_away_are_held_until_the_router_is_full(
    tmp_path: Path,
) -> None:
    edge = Edge(tmp_path, max_backend_queue_packets=1)
    await edge.register("a-1")
    edge.hub.link_lost(edge.backend)
    first = {"USED_AGENT_ID": "a-1", "final_data": {"n": 1}}
    assert (await edge.local.post_json("/submit_task", first)).code == 200  # held
    second = {"USED_AGENT_ID": "a-1", "final_data": {"n": 2}}
    message = assert_json_error(await edge.local.post_json("/submit_task", second), 503)
    assert "cannot hold more" in message
    edge.connect_backend()
    assert [p.data for p in edge.sent(SUBMIT_UNIT)] == [{"n": 1}]


@pytest_twisted.ensureDeferred
async def test_a_backend_that_does_not_answer_in_time_is_504(edge: Edge) -> None:
    edge.connect_backend()
    sent = edge.local.send_post("/request_agent", json_body({"provider_data": {}}))
    edge.local.flush()
    edge.clock.advance(4.9)
    edge.local.flush()
    assert not sent.called
    edge.clock.advance(0.1)
    message = assert_json_error(await edge.local.reply(sent), 504)
    assert message == "the backend did not answer within 5 seconds"


@pytest_twisted.ensureDeferred
async def test_a_registration_pending_when_the_router_stops_is_503(edge: Edge) -> None:
    edge.connect_backend()
    sent = edge.local.send_post("/request_agent", json_body({"provider_data": {}}))
    edge.local.flush()
    assert not sent.called
    edge.hub.stop()
    assert "shutting down" in assert_json_error(await edge.local.reply(sent), 503)


class ConfirmingBackend(FakeLink):
    """An embedded backend's link: it says whether each submission was stored."""

    def __init__(self, stored: bool) -> None:
        super().__init__("embedded")
        self.stored = stored

    def send_and_confirm(self, packet: Packet) -> Deferred[Handled]:
        self.send_packet(packet)
        return succeed(Handled(Outcome.STORED if self.stored else Outcome.FAILED))


@pytest.mark.parametrize("stored", [True, False])
@pytest_twisted.ensureDeferred
async def test_an_embedded_submission_is_acknowledged_only_if_stored(
    edge: Edge, stored: bool
) -> None:
    await edge.register("a-1")
    backend = ConfirmingBackend(stored)
    edge.connect_backend(backend)
    reply = await edge.local.post_json("/submit_task", {"USED_AGENT_ID": "a-1", "final_data": {}})
    if stored:
        assert (reply.code, reply.json()) == (200, {"status": "Submitted!"})
    else:
        assert "please submit again" in assert_json_error(reply, 503)
    assert [p.packet_type for p in backend.sent] == [SUBMIT_UNIT]


# --- odd input never answers 500 ---


@pytest.mark.parametrize("path", ["/request_agent", "/submit_task", "/log_error"])
@pytest_twisted.ensureDeferred
async def test_json_nested_too_deeply_is_a_400(tmp_path: Path, path: str) -> None:
    edge = Edge(tmp_path, max_body_bytes=1_000_000, max_json_bytes=1_000_000)
    deep = b"[" * 200_000 + b"]" * 200_000
    assert_json_error(await edge.local.post(path, deep), 400)


@pytest_twisted.ensureDeferred
async def test_a_timestamp_too_large_for_a_float_is_ignored(edge: Edge) -> None:
    edge.connect_backend()
    body = b'{"provider_data": {"worker_name": "w"}, "client_timestamp": 1' + b"0" * 400 + b"}"
    sent = edge.local.send_post("/request_agent", body)
    edge.local.flush()
    [request] = edge.backend.of_type(REGISTER_AGENT)
    assert request.client_timestamp is None
    edge.answer_registration("a-1")
    assert (await edge.local.reply(sent)).code == 200
