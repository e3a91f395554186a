"""What the router refuses before any route reads a request, and odd input that must be a
4xx (never a 500), through RouterWeb's real Site in memory (tests/memory_http.py).

Two body limits, chosen from the headers alone: a multipart upload to /submit_task or
/submit_metadata may reach `max_body_bytes`, any other body `max_json_bytes`. A request
declaring more is answered 413 before its body is read, and its connection closed; a
chunked body is cut off the same way once it passes its limit.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import pytest
import pytest_twisted

from architect.protocol import REGISTER_AGENT, SUBMIT_UNIT
from architect.router.intake import IN_MEMORY_BODY
from tests.memory_http import RawHTTP
from tests.test_router_web import (
    MULTIPART,
    TOKEN,
    Edge,
    assert_json_error,
    field,
    file_part,
    json_body,
    multipart,
    padded_submission,
)

JSON_LIMIT = 1_000  # max_json_bytes
BODY_LIMIT = 5_000  # max_body_bytes
HUGE = 256 * 1024 * 1024  # a Content-Length no test ever sends the body of

JSON_ROUTES = [
    "/request_agent",
    "/register_worker",
    "/submit_onboarding",
    "/submit_task",
    "/submit_metadata",
    "/log_error",
]


def two_limits(tmp_path: Path) -> Edge:
    return Edge(tmp_path, max_json_bytes=JSON_LIMIT, max_body_bytes=BODY_LIMIT)


def head(path: str, *headers: str) -> bytes:
    """The head of a POST (its request line and headers), ending in the blank line."""
    lines = [f"POST {path} HTTP/1.1", "Host: tasks.example", *headers, "", ""]
    return "\r\n".join(lines).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# --- max_json_bytes and max_body_bytes ---


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest_twisted.ensureDeferred
async def test_a_json_body_over_max_json_bytes_is_413_though_under_max_body_bytes(
    tmp_path: Path, path: str
) -> None:
    edge = two_limits(tmp_path)
    await edge.register("a-1")
    edge.backend.sent.clear()
    message = assert_json_error(await edge.local.post(path, padded_submission(JSON_LIMIT + 1)), 413)
    assert message == f"the body is larger than {JSON_LIMIT} bytes"
    assert edge.backend.sent == []


@pytest_twisted.ensureDeferred
async def test_a_json_body_at_max_json_bytes_and_an_upload_past_it_are_taken(
    tmp_path: Path,
) -> None:
    edge = two_limits(tmp_path)
    await edge.register("a-1")
    at_limit = await edge.local.post("/submit_task", padded_submission(JSON_LIMIT))
    assert (at_limit.code, at_limit.json()) == (200, {"status": "Submitted!"})
    form = multipart(
        field("USED_AGENT_ID", "a-1"),
        field("final_string_data", "{}"),
        file_part("photo", "cat.png", "image/png", b"x" * (BODY_LIMIT - 500)),
    )
    assert JSON_LIMIT < len(form) <= BODY_LIMIT
    upload = await edge.local.post("/submit_task", form, MULTIPART)
    assert (upload.code, upload.json()) == (200, {"status": "Submitted!"})
    assert len(edge.sent(SUBMIT_UNIT)) == 2


@pytest.mark.parametrize("extra", [-600, 0, 600])
@pytest_twisted.ensureDeferred
async def test_an_upload_either_side_of_the_in_memory_bound_is_stored_whole(
    tmp_path: Path, extra: int
) -> None:
    # A body under IN_MEMORY_BODY is read into memory, one at or over it into a
    # temporary file (BoundedSite.getContentFile): either way the file arrives whole.
    edge = Edge(tmp_path, max_body_bytes=2 * IN_MEMORY_BODY)
    await edge.register("a-1")
    parts = [field("USED_AGENT_ID", "a-1"), field("final_string_data", "{}")]
    overhead = len(multipart(*parts, file_part("photo", "cat.png", "image/png", b"")))
    photo = bytes(range(256)) * (IN_MEMORY_BODY // 256 + 8)
    photo = photo[: IN_MEMORY_BODY - overhead + extra]
    form = multipart(*parts, file_part("photo", "cat.png", "image/png", photo))
    assert len(form) - IN_MEMORY_BODY == extra
    kept = edge.web.site().getContentFile(len(form))
    assert isinstance(kept, BytesIO) == (extra < 0)
    kept.close()
    reply = await edge.local.post("/submit_task", form, MULTIPART)
    assert (reply.code, reply.json()) == (200, {"status": "Submitted!"})
    [packet] = edge.sent(SUBMIT_UNIT)
    [stored] = packet.data["files"]
    assert (edge.config.upload_dir / stored["filename"]).read_bytes() == photo


@pytest_twisted.ensureDeferred
async def test_multipart_is_no_way_round_the_json_limit_of_other_routes(tmp_path: Path) -> None:
    edge = two_limits(tmp_path)
    edge.connect_backend()
    form = multipart(field("provider_data", "x" * (JSON_LIMIT + 100)))
    reply = await edge.local.post("/request_agent", form, MULTIPART)
    assert assert_json_error(reply, 413) == f"the body is larger than {JSON_LIMIT} bytes"
    assert edge.sent(REGISTER_AGENT) == []


# --- refused before the body is read ---


@pytest.mark.parametrize(
    ("path", "content_type", "limit"),
    [
        ("/submit_task", "application/json", JSON_LIMIT),
        ("/request_agent", "application/json", JSON_LIMIT),
        ("/log_error", "text/plain", JSON_LIMIT),
        ("/index.html", "application/json", JSON_LIMIT),  # a body where none is read
        ("/submit_task", MULTIPART, BODY_LIMIT),
        ("/submit_metadata", MULTIPART, BODY_LIMIT),
    ],
)
def test_a_content_length_over_the_limit_is_answered_at_once_and_the_connection_closed(
    tmp_path: Path, path: str, content_type: str, limit: int
) -> None:
    edge = two_limits(tmp_path)
    connection = RawHTTP(edge.web.site())
    headers = [f"Content-Type: {content_type}", f"Content-Length: {HUGE}"]
    connection.write(head(path, *headers) + b'{"USED_AGENT_ID": "a-1", ')
    # A few bytes of the 256 MiB were sent: the answer came without the rest.
    assert connection.status() == 413
    assert connection.json() == {"error": f"the body is larger than {limit} bytes"}
    assert connection.headers()[b"connection"] == b"close"
    assert connection.closed


def test_which_limit_applies_is_read_from_the_path_and_the_content_type(tmp_path: Path) -> None:
    edge = two_limits(tmp_path)
    # An upload between the two limits is read on (the router waits for its body) ...
    upload = RawHTTP(edge.web.site())
    upload.write(head("/submit_task", f"Content-Type: {MULTIPART}", "Content-Length: 3000"))
    assert upload.received == b"" and not upload.closed
    # ... the same length as JSON is not.
    as_json = RawHTTP(edge.web.site())
    as_json.write(head("/submit_task", "Content-Type: application/json", "Content-Length: 3000"))
    assert as_json.status() == 413 and as_json.closed


def test_a_refused_body_gets_no_100_continue(tmp_path: Path) -> None:
    edge = two_limits(tmp_path)
    connection = RawHTTP(edge.web.site())
    connection.write(head("/submit_task", f"Content-Length: {HUGE}", "Expect: 100-continue"))
    assert connection.received.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in connection.received
    assert connection.closed


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_is_cut_off_once_it_passes_its_limit(tmp_path: Path) -> None:
    edge = two_limits(tmp_path)
    await edge.register("a-1")
    edge.backend.sent.clear()
    connection = RawHTTP(edge.web.site())
    connection.write(head("/submit_task", "Transfer-Encoding: chunked"))
    body = padded_submission(JSON_LIMIT * 4)
    pieces = [body[start : start + 300] for start in range(0, len(body), 300)]
    sent = 0
    for piece in pieces:
        connection.write(chunk(piece))
        sent += 1
        if connection.received:
            break
    # Answered once past the limit (the fourth piece), not at the end of the body.
    assert sent == 4 < len(pieces)
    assert connection.status() == 413
    assert connection.json() == {"error": f"the body is larger than {JSON_LIMIT} bytes"}
    assert connection.closed
    assert edge.backend.sent == []


def test_a_chunked_body_sent_whole_in_one_write_is_answered_once(tmp_path: Path) -> None:
    edge = two_limits(tmp_path)
    connection = RawHTTP(edge.web.site())
    body = padded_submission(JSON_LIMIT * 2)
    connection.write(
        head("/submit_task", "Transfer-Encoding: chunked")
        + chunk(body[:900])
        + chunk(body[900:])
        + b"0\r\n\r\n"
        + head("/is_alive")  # a pipelined request after it: never read
    )
    assert connection.received.count(b"HTTP/1.1 ") == 1
    assert connection.status() == 413 and connection.closed


def test_a_body_within_its_limit_keeps_the_connection_for_the_next_request(
    tmp_path: Path,
) -> None:
    edge = two_limits(tmp_path)
    edge.connect_backend()
    edge.backend_tells_its_agents()
    connection = RawHTTP(edge.web.site())
    body = json_body({"USED_AGENT_ID": "ghost", "final_data": {}})
    headers = ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    connection.write(head("/submit_task", *headers) + body)
    connection.write(b"GET /is_alive HTTP/1.1\r\nHost: tasks.example\r\n\r\n")
    assert connection.received.count(b"HTTP/1.1 ") == 2  # 404 (no such agent), then 200
    assert not connection.closed


# --- odd paths and headers: a 4xx with a JSON message, never a 500 ---


def frontend(tmp_path: Path) -> Edge:
    static = tmp_path / "static"
    (static / "images").mkdir(parents=True)
    static.joinpath("index.html").write_text("the task page")
    static.joinpath("app.js").write_bytes(b"0123456789" * 10)
    (tmp_path / "secret.txt").write_bytes(b"secret")
    return Edge(tmp_path, static_dir=static)


@pytest.mark.parametrize(
    "path",
    ["/%00", "/app.js%00", "/%00/app.js", "/images/a%00b.png", "/%zz", "/%", "/app.js%2", "/%%41"],
)
@pytest_twisted.ensureDeferred
async def test_a_nul_or_a_broken_percent_encoding_in_a_static_path_is_404(
    tmp_path: Path, path: str
) -> None:
    edge = frontend(tmp_path)
    assert assert_json_error(await edge.remote.get(path), 404) == "no such file"


@pytest.mark.parametrize("path", ["/%ff", "/%e9t%e9.html", "/images/%c3", "/submit_task%ff"])
@pytest_twisted.ensureDeferred
async def test_a_path_that_is_not_utf8_is_400(tmp_path: Path, path: str) -> None:
    edge = frontend(tmp_path)
    assert assert_json_error(await edge.remote.get(path), 400) == "the URL must be UTF-8 text"


def test_a_host_that_is_not_utf8_is_400(tmp_path: Path) -> None:
    connection = RawHTTP(frontend(tmp_path).web.site())
    connection.write(b"GET /index.html HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n")
    assert connection.status() == 400
    assert connection.json() == {"error": "the URL must be UTF-8 text"}


@pytest.mark.parametrize(
    "byte_range",
    [
        "bytes=-99999999999999999999",  # a suffix longer than the file: all of it
        "bytes=-101",
        "bytes=\xff",  # not ASCII
        "bytes=0-1,0-1,0-1",  # overlapping ranges
        "bytes=50-59,0-9",  # ranges out of order
        ",".join(["bytes=0-0"] + ["1-1"] * 500),
        "bytes=5-2",
        "lines=0-1",
    ],
    ids=[
        "huge-suffix",
        "long-suffix",
        "not-ascii",
        "overlapping",
        "unordered",
        "many",
        "backwards",
        "not-bytes",
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_range_the_router_does_not_serve_gets_the_whole_file(
    tmp_path: Path, byte_range: str
) -> None:
    connection = RawHTTP(frontend(tmp_path).web.site())
    request = f"GET /app.js HTTP/1.1\r\nHost: tasks.example\r\nRange: {byte_range}\r\n\r\n"
    connection.write(request.encode("latin-1"))
    await connection.settle()
    assert connection.status() == 200
    assert connection.headers()[b"content-length"] == b"100"
    assert connection.body() == b"0123456789" * 10
    assert not connection.closed


@pytest.mark.parametrize(
    ("byte_range", "code", "body"),
    [
        ("bytes=10-19", 206, b"0123456789"),
        ("bytes=-5", 206, b"56789"),
        ("bytes=-100", 206, b"0123456789" * 10),
        ("bytes=95-", 206, b"56789"),
        ("bytes=90-99999999999999999999", 206, b"0123456789"),
        ("bytes=100-", 416, b""),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_plain_single_range_is_served(
    tmp_path: Path, byte_range: str, code: int, body: bytes
) -> None:
    edge = frontend(tmp_path)
    reply = await edge.remote.get("/app.js", {"Range": byte_range})
    assert (reply.code, reply.body) == (code, body)


@pytest.mark.parametrize(
    ("client", "code", "message"),
    [
        ("remote", 403, "only the backend may download uploaded files"),
        ("backend", 404, "no uploaded file named '../secret.txt'"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_download_name_with_an_encoded_slash_is_refused_by_the_download_route(
    tmp_path: Path, client: str, code: int, message: str
) -> None:
    edge = frontend(tmp_path)
    query = f"?token={TOKEN}" if client == "backend" else ""
    reply = await edge.remote.get(f"/download_file/..%2Fsecret.txt{query}")
    assert assert_json_error(reply, code) == message
    assert b"secret" not in reply.body.replace(b"secret.txt", b"")


@pytest.mark.parametrize(
    "form",
    [
        multipart(field("USED_AGENT_ID", "a-1")).replace(b"a-1", b"a-\xff1"),
        multipart(field("USED_AGENT_ID", "a-1"), field("final_string_data", "{}")).replace(
            b"{}", b'{"text": "caf\xe9"}'
        ),
    ],
    ids=["agent-id", "final-string-data"],
)
@pytest_twisted.ensureDeferred
async def test_a_multipart_field_that_is_not_utf8_is_400(tmp_path: Path, form: bytes) -> None:
    edge = frontend(tmp_path)
    await edge.register("a-1")
    reply = await edge.local.post("/submit_task", form, MULTIPART)
    assert "is not UTF-8 text" in assert_json_error(reply, 400)
    assert edge.sent(SUBMIT_UNIT) == []


@pytest.mark.parametrize("method", ["DELETE", "PUT", "POST", "OPTIONS", "PATCH"])
@pytest_twisted.ensureDeferred
async def test_a_frontend_file_is_only_read_other_methods_get_a_json_405(
    tmp_path: Path, method: str
) -> None:
    """Found by fuzzing (tests/test_fuzz.py): DELETE /index.html was Twisted's HTML page
    "501 Huh?", POST its HTML 405."""
    edge = frontend(tmp_path)
    reply = await edge.remote.reply(edge.remote.send(method, "/index.html"))
    assert "only read" in assert_json_error(reply, 405)
    assert reply.headers.getRawHeaders("allow") == ["GET, HEAD"]
    head = await edge.remote.reply(edge.remote.send("HEAD", "/index.html"))
    assert head.code == 200


@pytest_twisted.ensureDeferred
async def test_the_frontend_still_serves_its_files(tmp_path: Path) -> None:
    edge = frontend(tmp_path)
    assert (await edge.remote.get("/")).body == b"the task page"
    assert (await edge.remote.get("/app.js")).body == b"0123456789" * 10
    reply = await edge.remote.get("/caf%C3%A9.html")  # UTF-8, percent-encoded: no such file
    assert assert_json_error(reply, 404) == "no such file"
    assert json.loads((await edge.remote.get("/is_alive")).body) == {"status": "Alive!"}
