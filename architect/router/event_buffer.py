"""The router's connection events waiting to go to its backend (protocol.EVENTS): bounded.

Per agent and kind at most EVENTS_KEPT_PER_KIND wait; more of that kind are counted, with
the last one's time, and go as a count (the database counts past the same bound): a page
that reconnects a thousand times a second costs a counter. All together at most
MAX_WAITING wait; past that, events are dropped and only their number goes to the backend.
A packet carries at most BATCH events.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from architect.connection_events import (
    EVENTS_KEPT_PER_KIND,
    ConnectionEvent,
    EventRepeats,
    to_wire,
)
from architect.protocol import CONNECTION_EVENTS, MEPHISTO, Packet

MAX_WAITING = 10_000
BATCH = 500
SEND_EVERY = 0.5  # seconds: the router sends what waits at most this often


class EventBuffer:
    def __init__(self, max_waiting: int = MAX_WAITING, per_kind: int = EVENTS_KEPT_PER_KIND):
        self.max_waiting = max_waiting
        self.per_kind = per_kind
        self.waiting: deque[ConnectionEvent] = deque()
        self.waiting_of: dict[tuple[str, str], int] = {}  # (agent, kind) -> how many wait
        self.counted: dict[tuple[str, str], tuple[int, float]] = {}  # -> (count, last at)
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.waiting or self.counted or self.dropped)

    def add(self, event: ConnectionEvent) -> None:
        key = (event.agent_id, event.event)
        if self.waiting_of.get(key, 0) >= self.per_kind:
            count, last = self.counted.get(key, (0, event.happened_at))
            self.counted[key] = (count + 1, max(last, event.happened_at))
        elif len(self.waiting) >= self.max_waiting:
            self.dropped += 1
        else:
            self.waiting.append(event)
            self.waiting_of[key] = self.waiting_of.get(key, 0) + 1

    def packets(self) -> Iterator[Packet]:
        """Everything waiting, taken, in `connection_events` packets of at most BATCH
        events (the counts go with the first)."""
        while self:
            batch = [self.waiting.popleft() for _ in range(min(BATCH, len(self.waiting)))]
            for event in batch:
                key = (event.agent_id, event.event)
                self.waiting_of[key] -= 1
                if not self.waiting_of[key]:
                    del self.waiting_of[key]
            repeats = [
                EventRepeats(agent_id, kind, count, last)
                for (agent_id, kind), (count, last) in self.counted.items()
            ]
            data = to_wire(batch, repeats, self.dropped)
            self.counted, self.dropped = {}, 0
            yield Packet(CONNECTION_EVENTS, MEPHISTO, data)

    def clear(self) -> None:
        self.waiting.clear()
        self.waiting_of.clear()
        self.counted, self.dropped = {}, 0
