"""WebSocket frames sent at the end of the reactor turn that wrote them.

Twisted's TCP transport buffers a write until the reactor's next turn: the socket is
watched for room (`epoll_ctl`), the reactor waits (`epoll_wait`, which returns at once),
sends, and unwatches it (`epoll_ctl`). Under registration load at c = 1-4 that turn is
on the path of every `/request_agent`, there and back through the backend. Sending each
frame at once cut it, but under load it cost more than it saved (a `send` per frame, a
segment per frame for the backend to read, where a turn's frames went together).

Here the frames a socket is given within one turn are held and sent together, in one
`send`, once the turn's events are handled (`callLater(0)` runs before the reactor waits
again): no waiting turn, and a turn's frames still go in one segment. What the socket does
not take, and anything on a TLS or other non-TCP transport, goes through the transport
as before (`lean_channel.send_now`). Every write of a socket goes through its batch while
one is held, and a batch is sent before its socket closes, so frames keep their order.

Only while the router is not busy: with many requests waiting for the backend (`busy`),
the turn Twisted waits gathers more frames per segment and more answers per read, which
is worth more there than the turn (S1 at c = 64: 4,300 against 5,500 registrations per s
when every frame was held only to the turn's end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from architect.router.lean_channel import send_now, socket_of


class TurnWrites:
    """The frames held for each socket in this turn, and the one call that sends them."""

    def __init__(self, busy: Callable[[], bool]) -> None:
        self.busy = busy
        self.held: dict[Any, list[bytes]] = {}  # transport -> frames, in order
        self.call: IDelayedCall | None = None

    def write(self, transport: Any, data: bytes) -> None:
        """Send `data` on `transport` at the end of this turn (at once through the transport
        if it is not plain TCP)."""
        held = self.held.get(transport)
        if held is not None:
            held.append(data)
            return
        connection = socket_of(transport)
        if connection is None or self.busy():
            transport.write(data)
            return
        self.held[transport] = [data]
        if self.call is None:
            self.call = cast(IReactorTime, connection.reactor).callLater(0, self.send_all)

    def send(self, transport: Any) -> None:
        """Send what is held for `transport` now (before it closes, or before a write that
        does not come through here)."""
        held = self.held.pop(transport, None)
        if held:
            send_now(transport, b"".join(held))

    def send_all(self) -> None:
        self.call = None
        for transport in list(self.held):
            self.send(transport)
