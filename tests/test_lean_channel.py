"""lean_channel.py on real loopback sockets: an answer sent at once is sent whole and in
order, through the connection caps' wrapper too; the socket's address is asked once."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from architect.router.lean_channel import send_now, socket_of
from tests.clients import open_raw, wait_for
from tests.test_hot_routes import REGISTER, router


class Kept(Protocol):
    """The server's side of a connection, kept for the test to write on."""

    opened: ClassVar[list[Kept]] = []

    def connectionMade(self) -> None:
        Kept.opened.append(self)


async def server_and_client(wrapped: bool) -> tuple[Any, Any]:
    """(the server side's transport, the raw client) of one loopback connection."""
    Kept.opened = []
    factory: Any = Factory.forProtocol(Kept)
    if wrapped:
        factory = WrappingFactory(factory)
    listener = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = await open_raw(listener.getHost().port)  # type: ignore[attr-defined]
    await wait_for(lambda: Kept.opened, "the server's side")
    listener.stopListening()
    return Kept.opened[0].transport, client


@pytest_twisted.ensureDeferred
async def test_an_idle_socket_takes_the_answer_at_once() -> None:
    transport, client = await server_and_client(wrapped=False)
    send_now(transport, b"whole answer")
    assert not transport.dataBuffer and not transport._tempDataBuffer  # nothing left waiting
    await wait_for(lambda: client.received == b"whole answer", "the answer")
    transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_what_waits_already_goes_first() -> None:
    transport, client = await server_and_client(wrapped=False)
    transport.write(b"first ")  # buffered until the reactor's next turn
    send_now(transport, b"second")
    assert transport._tempDataBuffer  # queued behind it, not sent ahead
    await wait_for(lambda: client.received == b"first second", "both, in order")
    transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_a_big_answer_the_socket_cannot_take_at_once_arrives_whole() -> None:
    transport, client = await server_and_client(wrapped=False)
    answer = bytes(range(256)) * 40_000  # about 10 MB: more than the socket buffers hold
    send_now(transport, answer)
    await wait_for(lambda: len(client.received) >= len(answer), "the whole answer")
    assert client.received == answer
    transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_through_a_protocol_wrapper_the_socket_is_found() -> None:
    transport, client = await server_and_client(wrapped=True)
    assert isinstance(transport, ProtocolWrapper)
    connection = socket_of(transport)
    assert isinstance(connection, Connection)
    send_now(transport, b"wrapped")
    assert not connection._tempDataBuffer
    await wait_for(lambda: client.received == b"wrapped", "the answer")
    transport.loseConnection()


def test_anything_but_a_plain_tcp_socket_is_written_as_before() -> None:
    written: list[bytes] = []

    class Memory:
        def write(self, data: bytes) -> None:
            written.append(data)

    assert socket_of(Memory()) is None
    send_now(Memory(), b"to the buffer")
    assert written == [b"to the buffer"]


@pytest_twisted.ensureDeferred
async def test_registration_answers_say_their_length_and_come_in_order(tmp_path: Any) -> None:
    with router(tmp_path, hot=True) as (_hub, port):
        client = await open_raw(port)
        client.send(REGISTER * 3)  # pipelined
        await wait_for(lambda: client.received.count(b"HTTP/1.1 200") == 3, "three answers")
        rest = client.received
        for _ in range(3):
            head, _, rest = rest.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)\r\ncontent-length: (\d+)", head).group(1))  # type: ignore[union-attr]
            assert b"transfer-encoding" not in head.lower()
            body, rest = rest[:length], rest[length:]
            assert body.startswith(b"{") and body.endswith(b"}")
        assert rest == b""
        assert client.transport is not None
        client.transport.loseConnection()
