"""Channels: how the backend reaches a router.

A `Channel` carries packets between the backend and one router. The backend
sets four callbacks on it (`on_open`, `on_message`, `on_lost`, `on_catastrophic_loss`)
and calls `open`, `send` and `close`. Packets sent while the channel is not
open are kept and sent, in order, when it opens.

The two kinds: `websocket_channel.WebsocketChannel` (a router elsewhere) and
`architect.embedded.InProcessChannel` (the router in the same process).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from twisted.internet.defer import Deferred

from architect.protocol import Packet


def _ignore(*args: object) -> None:
    pass


class Channel(abc.ABC):
    """One connection from the backend to a router."""

    def __init__(self, channel_id: str) -> None:
        self.channel_id = channel_id
        self.on_open: Callable[[Channel], None] = _ignore
        self.on_message: Callable[[Channel, Packet], object] = _ignore
        self.on_lost: Callable[[Channel], None] = _ignore  # an open link broke: reconnecting
        self.on_catastrophic_loss: Callable[[Channel], None] = _ignore

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.channel_id}>"

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """True while packets reach the router at once."""

    @property
    def extensions(self) -> frozenset[str]:
        """The Architect extensions agreed with the router now (protocol.EXTENSIONS)."""
        return frozenset()

    @abc.abstractmethod
    def open(self) -> None:
        """Start connecting (and reconnecting); `on_open` is called each time it opens."""

    @abc.abstractmethod
    def close(self) -> Deferred[None]:
        """Close cleanly and stop reconnecting; fires when closed."""

    @abc.abstractmethod
    def send(self, packet: Packet) -> None:
        """Send now, or keep until the channel (re)opens."""
