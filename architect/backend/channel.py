"""Channels: how the backend reaches a router.

A `Channel` carries packets between the backend and one router. The backend
sets three callbacks on it (`on_open`, `on_message`, `on_catastrophic_loss`)
and calls `open`, `send` and `close`. Packets sent while the channel is not
open are kept and sent, in order, when it opens.

`InProcessChannel` links the backend to a `RouterHub` in the same reactor (the
embedded mode): no socket, no JSON, but the same semantics as one. Packets are
copied at the boundary so the two sides never share a mutable dict, and each
is delivered in a later reactor turn, in order, so neither side is re-entered
while it is still handling a packet.
"""

from __future__ import annotations

import abc
import copy
from collections import deque
from collections.abc import Callable
from functools import partial

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from architect.protocol import Packet
from architect.router.hub import RouterHub

log = Logger()


def copy_packet(packet: Packet) -> Packet:
    return attrs.evolve(packet, data=copy.deepcopy(packet.data))


def _ignore(*args: object) -> None:
    pass


class Channel(abc.ABC):
    """One connection from the backend to a router."""

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        self.on_open: Callable[[Channel], None] = _ignore
        self.on_message: Callable[[Channel, Packet], object] = _ignore
        self.on_catastrophic_loss: Callable[[Channel], None] = _ignore

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.channel_id}>"

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """True while packets reach the router at once."""

    @abc.abstractmethod
    def open(self) -> None:
        """Start connecting (and reconnecting); `on_open` is called each time it opens."""

    @abc.abstractmethod
    def close(self) -> Deferred[None]:
        """Close cleanly and stop reconnecting; fires when closed."""

    @abc.abstractmethod
    def send(self, packet: Packet) -> None:
        """Send now, or keep until the channel (re)opens."""


class _HubSideLink:
    """What the hub sees of an in-process channel: a Link."""

    def __init__(self, channel: InProcessChannel) -> None:
        self.channel = channel

    def send_packet(self, packet: Packet) -> None:
        self.channel._router_sent(self, copy_packet(packet))

    def send_and_confirm(self, packet: Packet) -> Deferred[bool]:
        """Deliver, and say once the backend has handled it (a submission: committed)."""
        handled: Deferred[bool] = Deferred()
        self.channel._router_sent(self, copy_packet(packet), handled)
        return handled

    def close(self) -> None:
        self.channel._router_closed(self)

    def __repr__(self) -> str:
        return f"<in-process link of {self.channel.channel_id}>"


class InProcessChannel(Channel):
    """The backend and a RouterHub in one process, linked without a socket."""

    def __init__(self, hub: RouterHub, clock: IReactorTime, channel_id: str = "embedded") -> None:
        super().__init__(channel_id)
        self.hub = hub
        self.clock = clock
        self.link: _HubSideLink | None = None
        self._unsent: deque[Packet] = deque()
        self._deliveries: deque[Callable[[], None]] = deque()
        self._drain_call: IDelayedCall | None = None

    @property
    def is_open(self) -> bool:
        return self.link is not None

    def open(self) -> None:
        if self.link is not None:
            return
        link = self.link = _HubSideLink(self)
        self.hub.backend_connected(link)  # trusted: the hub is in our own process
        while self._unsent and self.link is link:
            self._later(partial(self._deliver_to_router, link, self._unsent.popleft()))
        self.on_open(self)

    def close(self) -> Deferred[None]:
        link, self.link = self.link, None
        if link is not None:
            self.hub.link_lost(link)
        return succeed(None)

    def send(self, packet: Packet) -> None:
        if self.link is None:
            self._unsent.append(copy_packet(packet))
            return
        self._later(partial(self._deliver_to_router, self.link, copy_packet(packet)))

    # --- delivery, one packet per call, in order, in a later reactor turn ---

    def _later(self, delivery: Callable[[], None]) -> None:
        self._deliveries.append(delivery)
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        while self._deliveries:
            self._deliveries.popleft()()

    def _deliver_to_router(self, link: _HubSideLink, packet: Packet) -> None:
        if link is self.link:
            self.hub.link_packet(link, packet)
        else:
            self._unsent.append(packet)  # closed since: kept for the next open

    def _deliver_to_backend(
        self, link: _HubSideLink, packet: Packet, handled: Deferred[bool] | None = None
    ) -> None:
        if link is not self.link:
            if handled is not None:
                handled.callback(False)
            return
        result = self.on_message(self, packet)
        if handled is not None:
            if isinstance(result, Deferred):
                result.addBoth(lambda outcome: handled.callback(outcome is True))
            else:
                handled.callback(True)

    # --- from the hub's side ---

    def _router_sent(
        self, link: _HubSideLink, packet: Packet, handled: Deferred[bool] | None = None
    ) -> None:
        self._later(partial(self._deliver_to_backend, link, packet, handled))

    def _router_closed(self, link: _HubSideLink) -> None:
        if link is not self.link:
            return
        # The hub gave our place to another backend; there is nothing to reconnect to.
        log.error("the router closed the in-process backend link (another backend took over?)")
        self.link = None
        self.hub.link_lost(link)
        self.on_catastrophic_loss(self)
