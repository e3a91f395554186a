"""turn_writes.py on real loopback sockets: a turn's frames leave together at its end, in
order, behind whatever the transport already holds; a busy router leaves them to the
transport; a socket that closes sends what was held first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from architect.router.turn_writes import TurnWrites
from architect.router.websocket import RouterSocket
from tests.clients import open_socket, wait_for
from tests.test_hot_routes import router
from tests.test_lean_channel import server_and_client


def sends_counted(transport: Any) -> list[bytes]:
    """What the socket under `transport` is given, one entry per `send`."""
    sent: list[bytes] = []
    real = transport.socket.send

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(real.__self__, name)

        def send(self, data: bytes) -> int:
            sent.append(bytes(data))
            n: int = real(data)
            return n

    transport.socket = Counting()
    return sent


@pytest_twisted.ensureDeferred
async def test_a_turns_frames_leave_in_one_send_at_its_end() -> None:
    transport, client = await server_and_client(wrapped=False)
    sent = sends_counted(transport)
    writes = TurnWrites(busy=lambda: False)
    writes.write(transport, b"one ")
    writes.write(transport, b"two ")
    writes.write(transport, b"three")
    assert sent == [] and client.received == b""  # held until the turn ends,
    assert writes.held[transport] == [b"one ", b"two ", b"three"]  # here,
    assert not transport._tempDataBuffer  # not in the transport's buffer
    await wait_for(lambda: client.received == b"one two three", "the frames, in order")
    assert sent == [b"one two three"]
    assert not transport.dataBuffer and not transport._tempDataBuffer  # none left waiting
    assert writes.held == {} and writes.call is None
    transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_held_frames_go_behind_what_the_transport_holds() -> None:
    transport, client = await server_and_client(wrapped=False)
    writes = TurnWrites(busy=lambda: False)
    transport.write(b"first ")  # in the transport's buffer, for its next turn
    writes.write(transport, b"second")
    await wait_for(lambda: client.received == b"first second", "both, in order")
    transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_busy_router_leaves_its_frames_to_the_transport() -> None:
    transport, client = await server_and_client(wrapped=True)
    busy = [True]
    writes = TurnWrites(busy=lambda: busy[0])
    writes.write(transport, b"a ")  # busy: straight to the transport's buffer
    assert writes.held == {} and writes.call is None
    busy[0] = False
    writes.write(transport, b"b ")  # held for the turn's end, behind "a"
    busy[0] = True
    writes.write(transport, b"c")  # a batch is held: it joins it, in order
    assert writes.held[transport] == [b"b ", b"c"]
    await wait_for(lambda: client.received == b"a b c", "all three, in order")
    transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_what_is_held_is_sent_before_the_socket_closes() -> None:
    transport, client = await server_and_client(wrapped=False)
    writes = TurnWrites(busy=lambda: False)
    writes.write(transport, b"last words")
    writes.send(transport)  # as RouterSocket does before it closes
    transport.loseConnection()
    await wait_for(lambda: client.received == b"last words", "the frame")
    await wait_for(lambda: client.closed.called, "the close")
    await deferLater(reactor, 0, lambda: None)  # the turn's end finds nothing held
    assert writes.held == {}


def test_anything_but_a_plain_tcp_socket_is_written_at_once() -> None:
    written: list[bytes] = []

    class Memory:
        def write(self, data: bytes) -> None:
            written.append(data)

    writes = TurnWrites(busy=lambda: False)
    writes.write(Memory(), b"frame")
    assert written == [b"frame"] and writes.held == {} and writes.call is None


@pytest_twisted.ensureDeferred
async def test_a_close_frame_goes_out_before_the_router_cuts_the_connection(
    tmp_path: Path,
) -> None:
    # The router sends a close frame (held for the turn's end) and cuts the connection in
    # the same turn: the frame must still go first (RouterSocket._closeConnection sends
    # it before the cut), or the page sees 1006 and no reason.
    with router(tmp_path, hot=True) as (hub, port):
        page = await open_socket(port)
        await wait_for(lambda: hub.unnamed_links, "the router's side of the socket")
        [socket] = list(hub.unnamed_links)
        assert isinstance(socket, RouterSocket)
        socket.close(4003)
        socket.dropConnection(abort=True)
        assert await page.closed == 4003
