"""Idle and excess connections: request headers within `header_timeout`, and the caps
`max_connections` and `max_connections_per_address`.

Black-box first (real daemons on 127.0.0.1, raw TCP clients that send what a browser
would not), then the same rules on a task.Clock, byte by byte over a StringTransport.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from architect.config import RouterConfig, load_config
from architect.protocol import ALIVE
from architect.router.connections import ConnectionCaps, TimelyHeaders
from architect.router.hub import RouterHub
from architect.router.web import RouterWeb
from tests.clients import RawConnection, open_raw, open_socket, reactor, wait_for
from tests.daemon import Daemons

# A request whose headers never end: the last header's value grows a byte at a time.
SLOW_HEADERS = b"GET /is_alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
IS_ALIVE = b"GET /is_alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def plain_answer(data: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, headers by lowercase name, the JSON body) of a whole answer with no chunks."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body), data
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_json_error(data: bytes, status: int) -> None:
    code, headers, body = plain_answer(data)
    assert code == status, data
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert isinstance(body["error"], str) and body["error"]


# --- slow headers, black-box ---


async def drip_until_closed(connection: RawConnection, every: float = 0.05) -> float:
    """Send SLOW_HEADERS, then one more byte every `every` seconds until the server closes
    the connection; the seconds that took."""
    started = time.monotonic()
    connection.send(SLOW_HEADERS)
    drip = LoopingCall(lambda: None if connection.has_closed else connection.send(b"x"))
    drip.clock = reactor
    drip.start(every, now=False)
    try:
        await wait_for(lambda: connection.has_closed, "the server to close a slow request")
    finally:
        drip.stop()
    return time.monotonic() - started


@pytest_twisted.ensureDeferred
async def test_headers_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout(
    daemons: Daemons,
) -> None:
    daemon = await daemons.embedded(router={"header_timeout": 0.5})
    prompt = await open_raw(daemon.port)
    await prompt.is_alive()  # a client that sends its request at once is served as ever
    slow = await open_raw(daemon.port)
    took = await drip_until_closed(slow)
    assert 0.4 <= took < 3.0
    assert_json_error(slow.received, 408)
    await prompt.is_alive()  # and its kept connection, idle meanwhile, is still there


@pytest_twisted.ensureDeferred
async def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout(
    daemons: Daemons,
) -> None:
    daemon = await daemons.embedded(router={"header_timeout": 0.3})
    silent = await open_raw(daemon.port)
    await wait_for(lambda: silent.has_closed, "the server to close a silent connection")
    assert_json_error(silent.received, 408)


@pytest.mark.slow  # waits, idle, past the header timeout
@pytest_twisted.ensureDeferred
async def test_each_request_on_a_kept_connection_has_its_own_header_deadline(
    daemons: Daemons,
) -> None:
    daemon = await daemons.embedded(router={"header_timeout": 0.5})
    kept = await open_raw(daemon.port)
    await kept.is_alive()
    await deferLater(reactor, 0.8)  # idle between requests: no deadline runs
    assert not kept.has_closed
    await kept.is_alive()
    before = len(kept.received)
    took = await drip_until_closed(kept)
    assert 0.4 <= took < 3.0
    assert_json_error(kept.received[before:], 408)


@pytest_twisted.ensureDeferred
async def test_a_websocket_outlives_the_header_timeout_once_its_headers_are_in(
    daemons: Daemons,
) -> None:
    daemon = await daemons.embedded(router={"header_timeout": 0.2})
    page = await open_socket(daemon.port)
    page.send(ALIVE, "agent-1")
    probe = await open_raw(daemon.port)  # closed at the header timeout, as a marker of time
    await wait_for(lambda: probe.has_closed, "the probe to be closed")
    assert not page.has_closed


@pytest_twisted.ensureDeferred
async def test_an_open_websocket_leaves_no_header_timer_holding_its_http_channel(
    daemons: Daemons,
) -> None:
    daemon = await daemons.embedded(router={"header_timeout": 60.0})
    page = await open_socket(daemon.port)
    page.send(ALIVE, "agent-1")
    await deferLater(reactor, 0.05, lambda: None)

    def upgraded_channels_timed() -> list[TimelyHeaders]:
        found = []
        for call in reactor.getDelayedCalls():
            channel = getattr(call.func, "__self__", None)
            if isinstance(channel, TimelyHeaders) and not _still_http(channel):
                found.append(channel)
        return found

    assert not page.has_closed
    assert upgraded_channels_timed() == []


def _still_http(channel: TimelyHeaders) -> bool:
    """Whether the channel's connection is still its own (not taken by a WebSocket)."""
    protocol = getattr(channel.transport, "protocol", None)
    return getattr(protocol, "wrappedProtocol", protocol) is channel


# --- connection caps, black-box ---


async def served(port: int, source: str) -> bool:
    """A new connection from `source` is answered /is_alive (not refused)."""
    connection = await open_raw(port, source)
    connection.ask("/is_alive")
    await wait_for(lambda: b'"Alive!"' in connection.received or connection.has_closed, "an answer")
    if connection.transport is not None:
        connection.transport.loseConnection()
    return b'"Alive!"' in connection.received


@pytest.mark.parametrize(
    ("router", "places", "extra", "elsewhere"),
    [
        # Three from one address fill its cap; a fourth from there is refused, and
        # another address is still served.
        ({"max_connections_per_address": 3}, ["127.0.0.1"] * 3, "127.0.0.1", "127.0.0.2"),
        # Three in all fill the total cap, whatever their addresses.
        (
            {"max_connections": 3, "max_connections_per_address": 0},
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
            "127.0.0.4",
            None,
        ),
    ],
    ids=["per-address", "total"],
)
@pytest_twisted.ensureDeferred
async def test_a_connection_past_a_cap_is_answered_503_and_the_others_carry_on(
    daemons: Daemons,
    router: dict[str, int],
    places: list[str],
    extra: str,
    elsewhere: str | None,
) -> None:
    daemon = await daemons.embedded(router=router)
    page = await open_socket(daemon.port)  # a WebSocket takes a place like any connection
    page.send(ALIVE, "agent-1")
    kept = [await open_raw(daemon.port, source) for source in places[1:]]
    for connection in kept:
        await connection.is_alive()

    refused = await open_raw(daemon.port, extra)
    refused.send(IS_ALIVE)  # as a browser would, at once
    await wait_for(lambda: refused.has_closed, "the refused connection to close")
    assert_json_error(refused.received, 503)

    for connection in kept:  # those already in are unaffected
        await connection.is_alive()
    assert not page.has_closed
    if elsewhere is not None:
        assert await served(daemon.port, elsewhere)

    await page.close()  # its place is free again
    await wait_for(lambda: served(daemon.port, extra), "a freed place to be taken")


# --- on a task.Clock ---


class Edge:
    """RouterWeb's real Site over a hub on a task.Clock, and connections to it in memory."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.clock = Clock()
        config = RouterConfig(**{"upload_dir": tmp_path / "uploads", **settings})
        self.hub = RouterHub(self.clock, config)
        self.site = RouterWeb(self.hub, config).site()

    def connect(self, host: str = "192.0.2.1") -> tuple[IProtocol, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        protocol = self.site.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport


def closed(transport: StringTransport) -> bool:
    return bool(transport.disconnecting)


def test_the_header_deadline_runs_from_the_connection_whatever_bytes_come(
    tmp_path: Path,
) -> None:
    edge = Edge(tmp_path, header_timeout=10.0)
    channel, transport = edge.connect()
    channel.dataReceived(SLOW_HEADERS)
    for _ in range(9):  # a byte a second: Twisted's own idle timer would start again each time
        edge.clock.advance(1.0)
        channel.dataReceived(b"x")
    assert not closed(transport)
    edge.clock.advance(1.0)
    assert closed(transport)
    assert_json_error(transport.value(), 408)


def test_headers_in_time_are_served_and_the_next_request_starts_its_own_deadline(
    tmp_path: Path,
) -> None:
    edge = Edge(tmp_path, header_timeout=10.0)
    channel, transport = edge.connect()
    edge.clock.advance(9.0)
    channel.dataReceived(IS_ALIVE)
    assert b"Alive!" in transport.value()
    edge.clock.advance(30.0)  # idle between requests: the header deadline is not running
    assert not closed(transport)
    channel.dataReceived(SLOW_HEADERS)  # the next request's first bytes start its deadline
    edge.clock.advance(9.9)
    assert not closed(transport)
    edge.clock.advance(0.1)
    assert closed(transport)


def test_pipelined_requests_each_meet_their_deadline(tmp_path: Path) -> None:
    edge = Edge(tmp_path, header_timeout=10.0)
    channel, transport = edge.connect()
    channel.dataReceived(IS_ALIVE + IS_ALIVE + SLOW_HEADERS)
    assert transport.value().count(b"Alive!") == 2
    edge.clock.advance(9.9)
    assert not closed(transport)
    edge.clock.advance(0.1)
    assert closed(transport)


def test_a_slow_body_is_not_cut_off_by_the_header_deadline(tmp_path: Path) -> None:
    edge = Edge(tmp_path, header_timeout=10.0)
    edge.hub.agents.ensure("agent-1")  # as if the backend had named it
    channel, transport = edge.connect()
    body = json.dumps({"USED_AGENT_ID": "agent-1", "error_data": {}}).encode()
    channel.dataReceived(
        b"POST /log_error HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    for byte in body[:-1]:  # the body's own pace is Twisted's idle timeout's to judge
        edge.clock.advance(1.0)
        channel.dataReceived(bytes([byte]))
    assert not closed(transport)
    channel.dataReceived(body[-1:])
    assert b"Error log sent!" in transport.value()


class Caps:
    """ConnectionCaps in front of RouterWeb's Site, on a task.Clock."""

    def __init__(self, tmp_path: Path, total: int, per_address: int) -> None:
        self.edge = Edge(tmp_path)
        self.caps = ConnectionCaps(self.edge.site, self.edge.clock, total, per_address)

    def connect(self, host: str) -> tuple[IProtocol, StringTransport]:
        address = IPv4Address("TCP", host, 40000)
        protocol = self.caps.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport


def lose(protocol: IProtocol) -> None:
    protocol.connectionLost(Failure(ConnectionDone()))


def test_the_caps_count_connections_until_they_close(tmp_path: Path) -> None:
    caps = Caps(tmp_path, total=3, per_address=2)
    first, _ = caps.connect("192.0.2.1")
    caps.connect("192.0.2.1")
    _, refused = caps.connect("192.0.2.1")  # the address's cap
    assert_json_error(refused.value(), 503)
    caps.connect("192.0.2.2")
    _, refused = caps.connect("192.0.2.3")  # the total cap
    assert_json_error(refused.value(), 503)
    lose(first)
    _, taken = caps.connect("192.0.2.1")
    assert taken.value() == b"" and not closed(taken)


def test_zero_means_no_cap(tmp_path: Path) -> None:
    caps = Caps(tmp_path, total=0, per_address=0)
    transports = [caps.connect("192.0.2.1")[1] for _ in range(50)]
    assert not any(t.value() or closed(t) for t in transports)


def test_a_refused_connection_is_closed_once_its_request_is_read_or_soon_after(
    tmp_path: Path,
) -> None:
    caps = Caps(tmp_path, total=1, per_address=0)
    caps.connect("192.0.2.1")
    # Closing with the client's request unread would reset the connection, and the client
    # could lose the answer: the refusal reads the request's head first.
    asking, transport = caps.connect("192.0.2.2")
    assert_json_error(transport.value(), 503)
    assert not closed(transport)
    asking.dataReceived(IS_ALIVE[:10])
    assert not closed(transport)
    asking.dataReceived(IS_ALIVE[10:])
    assert closed(transport)
    # One that sends nothing is closed soon all the same.
    _, silent = caps.connect("192.0.2.3")
    caps.edge.clock.advance(1.0)
    assert closed(silent)


def test_the_service_unit_has_file_descriptors_to_spare_above_the_cap() -> None:
    root = Path(__file__).resolve().parent.parent
    [limit] = [
        line.partition("=")[2]
        for line in (root / "conf" / "architect.service").read_text().splitlines()
        if line.startswith("LimitNOFILE=")
    ]
    shipped = load_config(root / "conf" / "router.ini").router
    for cap in (RouterConfig().max_connections, shipped.max_connections):
        assert int(limit) >= cap + 1000  # the database, logs, files served, the backend
