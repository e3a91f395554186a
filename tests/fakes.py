"""In-memory links for testing cores without sockets."""

from __future__ import annotations

from architect.protocol import Packet


class FakeLink:
    """A link that records what the hub sends it."""

    def __init__(self, name: str = "link") -> None:
        self.name = name
        self.sent: list[Packet] = []
        self.closed = False
        self.close_code: int | None = None

    def send_packet(self, packet: Packet) -> None:
        self.sent.append(packet)

    def close(self, code: int) -> None:
        self.closed = True
        self.close_code = code

    def types(self) -> list[str]:
        return [p.packet_type for p in self.sent]

    def of_type(self, packet_type: str) -> list[Packet]:
        return [p for p in self.sent if p.packet_type == packet_type]

    def __repr__(self) -> str:
        return f"FakeLink({self.name})"
