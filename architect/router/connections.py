"""Bounds on the router's connections: request headers within a deadline, and caps on how
many connections are open, in all and from one address.

Both act below Klein, on the raw connection, and answer with a whole HTTP answer of their
own (a JSON error, `Connection: close`) before closing. `TimelySite` is the Site of
`RouterWeb.site()`, its channels `TimelyHeaders`; `ConnectionCaps` wraps the Site where
it listens (`RouterService`), so a WebSocket, which takes over its HTTP connection, keeps
its place.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocol,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from architect.router.lean_channel import LeanChannel

log = Logger()

# Seconds a refused connection is kept for the client to read its answer (and for the
# router to read the client's request, see `_Refused`) before it is cut.
REFUSED_LINGER = 1.0
# A deadline this close is reached (a timer set again for the rest lands within rounding).
_ROUNDING = 1e-6


def plain_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer carrying `{"error": message}`, for the raw connection."""
    body = json.dumps({"error": message}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class TimelyHeaders(LeanChannel):
    """An HTTP channel whose requests must have their headers in within `header_timeout`
    seconds: of the connection for its first request, of a later request's first byte on
    a kept connection. Past it the client gets 408 and the connection is closed.

    Twisted's own idle timeout starts again at every byte, so a client sending a header
    byte a second (slowloris) would hold its connection for ever. Bodies and answers are
    not timed here, nor a WebSocket once its upgrade request's headers are in.
    """

    header_timeout = 10.0
    _deadline: IDelayedCall | None = None
    _deadline_at: float | None = None  # when the awaited headers must be in; None: none awaited
    _idle = False  # the last request was answered and nothing of the next has come yet

    def connectionMade(self) -> None:
        super().connectionMade()
        self._start_deadline()

    def dataReceived(self, data: bytes) -> None:
        if data and self._idle:
            self._next_request_begun()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._idle:  # a line of the next request, come while the last was answered
            self._next_request_begun()
        super().lineReceived(line)

    def allHeadersReceived(self) -> None:
        self._idle = False
        self._stop_deadline()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        # Set before Twisted reads on: it parses the bytes that came meanwhile at once.
        self._idle = bool(self.persistent)
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.drop_deadline()
        super().connectionLost(reason)

    def drop_deadline(self) -> None:
        """No headers are awaited any more, nor will be (closed, or a WebSocket now):
        the timer goes, and with it its hold on this channel."""
        self._deadline_at = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _next_request_begun(self) -> None:
        self._idle = False
        self._start_deadline()

    def _start_deadline(self) -> None:
        self._deadline_at = self._now() + self.header_timeout
        if self._deadline is None:
            self._deadline = self.callLater(self.header_timeout, self._deadline_reached)

    def _stop_deadline(self) -> None:
        # The timer stays: it finds nothing to time, or a later deadline to wait for. A
        # kept connection's requests then cost no timer each, one per header_timeout.
        self._deadline_at = None

    def _deadline_reached(self) -> None:
        self._deadline = None
        if self._deadline_at is None:
            return
        left = self._deadline_at - self._now()
        if left > _ROUNDING:
            self._deadline = self.callLater(left, self._deadline_reached)
        else:
            self._too_slow()

    def _now(self) -> float:
        seconds: float = self.factory.reactor.seconds()
        return seconds

    def _too_slow(self) -> None:
        transport = self.transport
        if transport is not None and not getattr(transport, "disconnecting", False):
            message = f"the request's headers did not come within {self.header_timeout:g} seconds"
            transport.write(plain_answer(408, "Request Timeout", message))
        self.timeoutConnection()  # Twisted's: close, and abort if the client does not read


class _Refused(Protocol):
    """A connection over a cap: answered 503 at once, then closed once the client's request
    head is read, or after REFUSED_LINGER seconds whatever the client does. (Closing with
    the client's bytes unread would reset the connection, and the client could lose the
    answer.)"""

    def __init__(self, clock: IReactorTime, message: str) -> None:
        self.clock = clock
        self.message = message
        self._seen = b""
        self._cut: IDelayedCall | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(plain_answer(503, "Service Unavailable", self.message))
        self._cut = self.clock.callLater(REFUSED_LINGER, self._abort)

    def dataReceived(self, data: bytes) -> None:
        seen = self._seen + data
        if b"\r\n\r\n" in seen and self.transport is not None:
            self.transport.loseConnection()
        self._seen = seen[-3:]  # the end of the head may come split

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._cut is not None and self._cut.active():
            self._cut.cancel()

    def _abort(self) -> None:
        # Cut, not closed: a client that reads nothing would hold a closing connection.
        self._cut = None
        tcp = ITCPTransport(self.transport, None)
        if tcp is not None:
            tcp.abortConnection()
        elif self.transport is not None:
            self.transport.loseConnection()


class _Counted(ProtocolWrapper):
    """One connection through the caps; `counts` is False for a refused one."""

    def __init__(
        self, factory: ConnectionCaps, wrapped: IProtocol, address: str | None, counts: bool
    ) -> None:
        super().__init__(factory, wrapped)
        self.address = address
        self.counts = counts


class ConnectionCaps(WrappingFactory[_Counted]):
    """A factory (the router's Site) behind caps on its open connections: `total` in all,
    `per_address` from one peer address (0: no cap). A connection over a cap is answered
    503 and closed; those already open are untouched. A connection with no IP address
    (a UNIX socket) counts in the total only."""

    def __init__(self, wrapped: Any, clock: IReactorTime, total: int, per_address: int) -> None:
        super().__init__(wrapped)
        self.clock = clock
        self.total = total
        self.per_address = per_address
        self.open = 0
        self.by_address: Counter[str] = Counter()
        # The caps reached, said once in the log until they are no longer reached.
        self._total_reached = False
        self._addresses_at_cap: set[str] = set()

    def logPrefix(self) -> str:
        # The Site's: the start-up line stays Twisted's "Site starting on PORT".
        prefix: str = self.wrappedFactory.logPrefix()
        return prefix

    def buildProtocol(self, addr: IAddress | None) -> _Counted:
        address = getattr(addr, "host", None)
        refusal = self._refusal(address)
        if refusal is not None:
            return _Counted(self, _Refused(self.clock, refusal), address, counts=False)
        return _Counted(self, self.wrappedFactory.buildProtocol(addr), address, counts=True)

    def _refusal(self, address: str | None) -> str | None:
        """Why a new connection from `address` is refused, or None."""
        if self.total and self.open >= self.total:
            if not self._total_reached:
                self._total_reached = True
                log.warn(
                    "{total} connections open, the most [router] max_connections allows: "
                    "new ones are answered 503 until some close",
                    total=self.total,
                )
            return "the router has too many connections open; try again shortly"
        if self.per_address and address is not None:
            if self.by_address[address] >= self.per_address:
                if address not in self._addresses_at_cap:
                    self._addresses_at_cap.add(address)
                    log.warn(
                        "{count} connections open from {address}, the most [router] "
                        "max_connections_per_address allows: new ones from it are answered "
                        "503 until some close (behind a reverse proxy every worker comes "
                        "from its address: raise the cap, or set it to 0)",
                        count=self.per_address,
                        address=address,
                    )
                return "too many connections from your address; try again shortly"
        return None

    def registerProtocol(self, p: _Counted) -> None:
        super().registerProtocol(p)
        if p.counts:
            self.open += 1
            if p.address is not None:
                self.by_address[p.address] += 1

    def unregisterProtocol(self, p: _Counted) -> None:
        super().unregisterProtocol(p)
        if not p.counts:
            return
        self.open -= 1
        if self.open < self.total:
            self._total_reached = False
        if p.address is not None:
            self.by_address[p.address] -= 1
            if self.by_address[p.address] < self.per_address:
                self._addresses_at_cap.discard(p.address)
            if not self.by_address[p.address]:
                del self.by_address[p.address]
