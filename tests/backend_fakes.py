"""In-memory channels for testing the backend without sockets."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from architect.backend.channel import Channel
from architect.protocol import Packet


class FakeChannel(Channel):
    """A channel that records what the backend sends and lets a test play the router."""

    def __init__(self, channel_id: str = "fake", opened: bool = True) -> None:
        super().__init__(channel_id)
        self.sent: list[Packet] = []
        self.opened = opened
        self.closed = False

    @property
    def is_open(self) -> bool:
        return self.opened and not self.closed

    def open(self) -> None:
        self.opened = True
        self.on_open(self)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)

    def send(self, packet: Packet) -> None:
        self.sent.append(packet)

    # --- the router's side ---

    def receive(
        self, packet_type: str, subject_id: str, data: dict[str, Any] | None = None
    ) -> Deferred[None]:
        """A packet from the router; the handler's Deferred for it."""
        result = self.on_message(self, Packet(packet_type, subject_id, data or {}))
        assert isinstance(result, Deferred)
        return result

    def of_type(self, packet_type: str) -> list[Packet]:
        return [p for p in self.sent if p.packet_type == packet_type]

    def types(self) -> list[str]:
        return [p.packet_type for p in self.sent]

    def clear(self) -> None:
        self.sent.clear()
