"""An HTTP channel that spends less per answer on the socket than Twisted's.

Measured with `strace -c` on the router under registration load (S1): per registration
one `getsockname` (Twisted asks the socket for its own address for every request) and
two `epoll_ctl` (every answer is buffered, the socket watched for room, then unwatched
once the reactor's next turn has sent it), besides the `send` itself.

- `getHost` is asked of the socket once per connection: an accepted socket's own
  address does not change.
- `answer_at_once(respond)` collects what `respond` writes (an answer's head and body)
  and sends it in one `send` at once when the socket has nothing else waiting; what the
  socket does not take, and every write outside it, goes through the transport as
  before. Only whole answers of known size are given to it (`hot_routes.py`): a
  streamed body would be held until its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IAddress
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers


def socket_of(transport: Any) -> tcp.Connection | None:
    """The plain TCP connection under `transport` (through the connection caps' wrapper),
    or None for anything else (TLS, a UNIX socket, a test's memory transport)."""
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    if isinstance(transport, tcp.Connection) and not getattr(transport, "TLS", False):
        return transport
    return None


def _nothing_waiting(connection: tcp.Connection) -> bool:
    """The connection is open and holds no bytes of its own to send (read from Twisted's
    own attributes: a Twisted without them gets the transport's way)."""
    try:
        return bool(
            connection.connected
            and not connection.disconnecting
            and not connection._writeDisconnected
            and not connection.dataBuffer
            and not connection._tempDataBuffer
        )
    except AttributeError:
        return False


def send_now(transport: Any, data: bytes) -> None:
    """`transport.write(data)`, sent at once if the socket has nothing else waiting."""
    connection = socket_of(transport)
    if connection is not None and _nothing_waiting(connection):
        try:
            sent = connection.socket.send(data)
        except OSError:  # full, interrupted, or gone: the transport finds out and says so
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class LeanChannel(HTTPChannel):
    _host: IAddress | None = None
    _batch: list[bytes] | None = None  # what an answer wrote, while answered at once

    def getHost(self) -> IAddress:
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def answer_at_once(self, respond: Callable[[], None]) -> None:
        """Run `respond`, which writes one whole answer, and send what it wrote together."""
        self._batch = []
        try:
            respond()
        finally:
            self._send_batch()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if self._batch is None or not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        batch = self._batch
        batch.append(b"%s %s %s\r\n" % (version, code, reason))
        for name, values in headers.getAllRawHeaders():
            batch.extend(b"%s: %s\r\n" % (name, value) for value in values)
        batch.append(b"\r\n")

    def write(self, data: bytes) -> None:
        if self._batch is None:
            super().write(data)
        else:
            self._batch.append(data)

    def writeSequence(self, iovec: Any) -> None:
        if self._batch is None:
            super().writeSequence(iovec)
        else:
            self._batch.extend(iovec)

    def requestDone(self, request: Any) -> None:
        # Sent before Twisted goes on: it may read and answer the next request now, or
        # close the connection.
        self._send_batch()
        super().requestDone(request)

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch and self.transport is not None:
            send_now(self.transport, b"".join(batch))
