"""The hot routes (architect/router/hot_routes.py) answer exactly as Klein's routing does.

Each case is sent, byte for byte, over a real socket to two routers that differ only in
`RouterWeb.site(hot_routes=...)`; the answers (status line, headers, body, whether the
connection was closed) must be the same once what is random in them (the Date, a new
session id, a request id, the router's timestamps) is masked. Normal and hostile
requests: bad JSON, wrong shapes, over the body limit, chunked, Expect, Connection:
close, HTTP/1.0, pipelined, a query string, another method, no backend, draining, a
route that raises, a cookie (ours, a forged one), X-Forwarded-Proto.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor

from architect.config import RouterConfig
from architect.protocol import (
    AGENT_DETAILS,
    MAX_ID_LENGTH,
    MEPHISTO,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    Packet,
)
from architect.router.hub import RouterHub
from architect.router.web import RouterWeb
from tests.clients import RawConnection, open_raw, wait_for
from tests.fakes import FakeLink

reactor: Any = _reactor

LIMIT = 2_000  # max_json_bytes and max_body_bytes
SESSION = "S" * 32  # a session id of the router's shape
AGENT = "agent-1"


class AnsweringBackend(FakeLink):
    """A backend that names every registration's agent AGENT (on the next reactor turn)."""

    def __init__(self) -> None:
        super().__init__("backend")
        self.hub: RouterHub | None = None

    def send_packet(self, packet: Packet) -> None:
        super().send_packet(packet)
        if packet.packet_type == REGISTER_AGENT:
            details = {"request_id": packet.data["request_id"], "agent_id": AGENT}
            answer = Packet(AGENT_DETAILS, packet.subject_id, details)
            assert self.hub is not None
            reactor.callLater(0, self.hub.link_packet, self, answer)


@contextmanager
def router(tmp_path: Path, hot: bool, backend: bool = True) -> Iterator[tuple[RouterHub, int]]:
    config = RouterConfig(
        max_body_bytes=LIMIT,
        max_json_bytes=LIMIT,
        request_timeout=5.0,
        upload_dir=tmp_path / ("hot" if hot else "klein") / "uploads",
    )
    hub = RouterHub(reactor, config)
    site = RouterWeb(hub, config).site(hot_routes=hot)
    taken: list[object] = []
    shortcut = site.shortcut

    def counted(request: Any) -> Any:
        resource = shortcut(request)
        if resource is not None:
            taken.append(resource)
        return resource

    site.shortcut = counted
    hub.hot_taken = taken  # type: ignore[attr-defined]  # (the test reads it back)
    if backend:
        link = AnsweringBackend()
        link.hub = hub
        hub.backend_connected(link)
        for _ in range(2):  # the backend has told the router its agents (none)
            hub.link_packet(link, Packet(REQUEST_STATUSES, MEPHISTO))
    listener = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        yield hub, listener.getHost().port
    finally:
        listener.stopListening()
        hub.stop()


def complete_answers(data: bytes) -> int:
    """How many whole HTTP answers `data` holds (Content-Length or chunked)."""
    count = 0
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return count
        head = data[:end].lower()
        rest = data[end + 4 :]
        if re.match(rb"http/1\.[01] 1\d\d ", head):  # 100 Continue: more to come
            data = rest
            continue
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if length is not None:
            size = int(length.group(1))
            if len(rest) < size:
                return count
            data = rest[size:]
        elif b"transfer-encoding: chunked" in head:
            last = rest.find(b"\r\n0\r\n\r\n")
            if rest.startswith(b"0\r\n\r\n"):
                last = -2
            elif last < 0:
                return count
            data = rest[last + 7 :]
        else:
            return count  # read until closed
        count += 1


def masked(data: bytes) -> bytes:
    data = re.sub(rb"(?im)^date: [^\r\n]*", b"date: *", data)
    data = re.sub(rb"architect_session=[A-Za-z0-9_-]{32}", b"architect_session=*", data)
    data = re.sub(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", b"<id>", data)
    data = re.sub(rb'_timestamp": ?[0-9.e+-]+', b'_timestamp": *', data)
    # a body's length (Content-Length, or a chunk's size) follows the masked lengths
    data = re.sub(rb"(?im)^content-length: [0-9]+", b"content-length: *", data)
    return re.sub(rb"\r\n[0-9a-f]+\r\n(?=[{\[])", b"\r\n<n>\r\n", data)


def answered(connection: RawConnection, answers: int) -> bool:
    return complete_answers(connection.received) >= answers or connection.has_closed


async def exchange(port: int, steps: list[tuple[bytes, int]]) -> tuple[bytes, bool]:
    """Send each step's bytes once the answers of the steps before are in; what came
    back, and whether the router closed the connection."""
    connection: RawConnection = await open_raw(port)
    expected = 0
    for data, answers in steps:
        connection.send(data)
        expected += answers
        await wait_for(partial(answered, connection, expected), "the router's answers")
    closed = connection.has_closed
    if not closed and connection.transport is not None:
        connection.transport.loseConnection()
    return connection.received, closed


def post(path: str, body: bytes | str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    lines = [
        f"POST {path} {version}",
        "Host: 127.0.0.1",
        *headers,
        f"Content-Length: {len(data)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + data


def json_post(path: str, value: Any, *headers: str) -> bytes:
    return post(path, json.dumps(value), "Content-Type: application/json", *headers)


LONG_ID = "a" * (MAX_ID_LENGTH + 1)
COOKIE = f"Cookie: architect_session={SESSION}"
REGISTER = json_post("/request_agent", {"provider_data": {"worker": "w"}}, COOKIE)
SUBMIT = json_post("/submit_task", {"USED_AGENT_ID": AGENT, "final_data": {"a": 1}}, COOKIE)


def chunked(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head.encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def multipart_submission(agent: str) -> bytes:
    boundary = "b0undary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="USED_AGENT_ID"\r\n\r\n{agent}\r\n',
        f'--{boundary}\r\nContent-Disposition: form-data; name="final_string_data"\r\n\r\n'
        '{"x": 2}\r\n',
        f"--{boundary}--\r\n",
    ]
    return post(
        "/submit_task",
        "".join(parts),
        f"Content-Type: multipart/form-data; boundary={boundary}",
        COOKIE,
    )


# (name, steps: (bytes, answers expected), whether the hot routes must have taken some)
CASES: list[tuple[str, list[tuple[bytes, int]], bool]] = [
    ("registration, our cookie", [(REGISTER, 1)], True),
    ("registration, no cookie", [(json_post("/request_agent", {"provider_data": {}}), 1)], True),
    (
        "registration over a TLS proxy",
        [(json_post("/request_agent", {"provider_data": {}}, "X-Forwarded-Proto: HTTPS "), 1)],
        True,
    ),
    (
        "registration, a forged cookie",
        [(json_post("/request_agent", {"provider_data": {}}, "Cookie: architect_session=x"), 1)],
        True,
    ),
    ("register_worker", [(json_post("/register_worker", {"provider_data": {}}), 1)], True),
    ("not JSON", [(post("/request_agent", "{nope"), 1)], True),
    ("NaN", [(post("/request_agent", '{"provider_data": {}, "x": NaN}'), 1)], True),
    ("a list", [(post("/request_agent", "[1, 2]"), 1)], True),
    ("no provider_data", [(json_post("/request_agent", {"x": 1}), 1)], True),
    ("not UTF-8", [(post("/request_agent", b'{"provider_data": {"\xff": 1}}'), 1)], True),
    ("empty body", [(post("/request_agent", ""), 1)], True),
    ("over the limit", [(post("/request_agent", "x" * (LIMIT + 1)), 1)], False),
    ("chunked", [(chunked("/request_agent", b'{"provider_data": {}}'), 1)], True),
    ("chunked over the limit", [(chunked("/request_agent", b"x" * (LIMIT + 10)), 1)], False),
    (
        "Expect: 100-continue",
        [(json_post("/request_agent", {"provider_data": {}}, "Expect: 100-continue"), 1)],
        True,
    ),
    (
        "Connection: close",
        [(json_post("/request_agent", {"provider_data": {}}, "Connection: close"), 1)],
        True,
    ),
    (
        "HTTP/1.0",
        [(post("/request_agent", '{"provider_data": {}}', version="HTTP/1.0"), 1)],
        True,
    ),
    ("pipelined", [(REGISTER + SUBMIT + REGISTER, 3)], True),
    ("keep-alive", [(REGISTER, 1), (SUBMIT, 1), (SUBMIT, 1)], True),
    ("a query string", [(json_post("/request_agent?x=1", {"provider_data": {}}), 1)], False),
    ("a trailing slash", [(json_post("/request_agent/", {"provider_data": {}}), 1)], False),
    ("percent-encoded", [(json_post("/request%5Fagent", {"provider_data": {}}), 1)], False),
    ("GET", [(b"GET /request_agent HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 1)], False),
    ("lower-case method", [(REGISTER.replace(b"POST", b"post", 1), 1)], False),
    ("unknown agent", [(SUBMIT, 1)], True),
    ("someone else's agent", [(REGISTER, 1), (SUBMIT.replace(b"SSSS", b"TTTT"), 1)], True),
    ("submission", [(REGISTER, 1), (SUBMIT, 1)], True),
    ("submission, multipart", [(REGISTER, 1), (multipart_submission(AGENT), 1)], True),
    ("submission, no agent", [(json_post("/submit_task", {"final_data": {}}), 1)], True),
    (
        "submission, agent id too long",
        [
            (
                json_post(
                    "/submit_task", {"USED_AGENT_ID": "a" * (MAX_ID_LENGTH + 1), "final_data": {}}
                ),
                1,
            )
        ],
        True,
    ),
    (
        "metadata",
        [
            (REGISTER, 1),
            (json_post("/submit_metadata", {"USED_AGENT_ID": AGENT, "metadata": {}}, COOKIE), 1),
        ],
        True,
    ),
    (
        "metadata, not an object",
        [
            (REGISTER, 1),
            (json_post("/submit_metadata", {"USED_AGENT_ID": AGENT, "metadata": 3}, COOKIE), 1),
        ],
        True,
    ),
    ("bad header", [(b"POST /request_agent HTTP/1.1\r\nBad Header\r\n\r\n", 1)], False),
]


async def both(
    tmp_path: Path,
    steps: list[tuple[bytes, int]],
    backend: bool = True,
    patch: Callable[[RouterHub], None] | None = None,
) -> list[tuple[bytes, bool, int]]:
    """What the router with hot routes and the one without answered (masked), whether
    each closed the connection, and how many requests each's hot routes took."""
    results = []
    for hot in (True, False):
        with router(tmp_path, hot, backend) as (hub, port):
            if patch is not None:
                patch(hub)
            received, closed = await exchange(port, steps)
            results.append((masked(received), closed, len(hub.hot_taken)))  # type: ignore[attr-defined]
    return results


@pytest.mark.parametrize(("name", "steps", "hot"), CASES, ids=[c[0] for c in CASES])
@pytest_twisted.ensureDeferred
async def test_hot_routes_answer_as_klein_does(
    tmp_path: Path, name: str, steps: list[tuple[bytes, int]], hot: bool
) -> None:
    (hot_answer, hot_closed, taken), (klein_answer, klein_closed, none) = await both(
        tmp_path, steps
    )
    assert hot_answer == klein_answer
    assert hot_closed == klein_closed
    assert hot_answer.startswith(b"HTTP/1.")
    assert none == 0
    assert (taken > 0) == hot


@pytest_twisted.ensureDeferred
async def test_no_backend_is_the_same_503(tmp_path: Path) -> None:
    (hot, _, taken), (klein, _, _) = await both(tmp_path, [(REGISTER, 1)], backend=False)
    assert hot == klein and b" 503 " in hot.split(b"\r\n")[0] and taken == 1


@pytest_twisted.ensureDeferred
async def test_draining_is_the_same_503_with_retry_after(tmp_path: Path) -> None:
    def drain(hub: RouterHub) -> None:
        hub.draining = True

    (hot, _, taken), (klein, _, _) = await both(tmp_path, [(REGISTER, 1)], patch=drain)
    assert hot == klein and taken == 1
    assert b" 503 " in hot.split(b"\r\n")[0] and b"\r\nretry-after: 5\r\n" in hot.lower()


@pytest_twisted.ensureDeferred
async def test_a_route_that_raises_is_the_same_500(tmp_path: Path) -> None:
    def broken(hub: RouterHub) -> None:
        def request_agent(*args: Any) -> Any:
            raise RuntimeError("a bug")

        setattr(hub, "request_agent", request_agent)  # noqa: B010  (a method replaced)

    (hot, _, taken), (klein, _, _) = await both(tmp_path, [(REGISTER, 1)], patch=broken)
    assert hot == klein and taken == 1
    assert b" 500 " in hot.split(b"\r\n")[0] and b"internal error" in hot
    assert b"RuntimeError" not in hot
