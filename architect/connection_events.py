"""An agent's connection events: their kinds, their records, and their form on the wire.

Made where they happen (the router's hub and agent table, the backend's handler), carried
from the router to a backend that took the `events` extension (protocol.EVENTS) in
`connection_events` packets, kept with the run (storage's RunRecord part) and told by
`architect results --timeline`. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeGuard, TypeVar

import attrs

from architect.log_text import UNPRINTABLE
from architect.protocol import MAX_ID_LENGTH


class ConnectionEventKind:
    """What can happen to an agent's connection (the router's view, and the backend's)."""

    SOCKET_OPEN = "socket_open"  # the agent's first socket
    SOCKET_CLOSE = "socket_close"  # with the WebSocket close code (1006: abnormal)
    RELOAD = "reload"  # a socket opened again for an agent that had one
    HEARTBEAT_GAP = "heartbeat_gap"  # with its length in seconds
    ROUTER_LOST = "router_lost"  # the backend lost its link to the router
    REGISTERED_AGAIN = "registered_again"  # the worker's page registered again

    ALL = frozenset(
        {SOCKET_OPEN, SOCKET_CLOSE, RELOAD, HEARTBEAT_GAP, ROUTER_LOST, REGISTERED_AGAIN}
    )
    FROM_ROUTER = frozenset({SOCKET_OPEN, SOCKET_CLOSE, RELOAD, HEARTBEAT_GAP})


# Events of one kind kept per agent; the rest are counted (a flapping page fills no disk).
EVENTS_KEPT_PER_KIND = 50


@attrs.frozen
class ConnectionEvent:
    agent_id: str
    event: str
    happened_at: float
    code: int | None = None
    seconds: float | None = None


@attrs.frozen
class EventRepeats:
    """Events of a kind past the bound for one agent: how many, and the last one's time."""

    agent_id: str
    event: str
    repeats: int
    last_at: float


@attrs.frozen
class EventBatch:
    """What one `connection_events` packet carries."""

    events: list[ConnectionEvent]
    repeats: list[EventRepeats]
    dropped: int = 0  # the sender's buffer was full: neither kept nor counted
    odd: int = 0  # entries of the packet that were not events (read from the wire)


def to_wire(
    events: Sequence[ConnectionEvent], repeats: Sequence[EventRepeats], dropped: int
) -> dict[str, Any]:
    """A `connection_events` packet's data (docs/protocol.md)."""
    data: dict[str, Any] = {"events": [_event_to_wire(e) for e in events]}
    if repeats:
        data["repeats"] = [
            {"agent_id": r.agent_id, "event": r.event, "count": r.repeats, "last_at": r.last_at}
            for r in repeats
        ]
    if dropped:
        data["dropped"] = dropped
    return data


def _event_to_wire(event: ConnectionEvent) -> dict[str, Any]:
    entry: dict[str, Any] = {"agent_id": event.agent_id, "event": event.event}
    entry["at"] = event.happened_at
    if event.code is not None:
        entry["code"] = event.code
    if event.seconds is not None:
        entry["seconds"] = event.seconds
    return entry


T = TypeVar("T")

# Most entries read from one packet (a router sends at most a few hundred).
MAX_ENTRIES = 2000


def from_wire(data: dict[str, Any]) -> EventBatch:
    """The events of a router's `connection_events` packet; whatever is not a router's
    event (a kind it does not make, an odd id, time, code or count) is left out, counted."""
    events, odd_events = _read(data.get("events"), _event_from_wire)
    repeats, odd_repeats = _read(data.get("repeats", []), _repeats_from_wire)
    odd = odd_events + odd_repeats
    dropped = data.get("dropped", 0)
    if not _is_count(dropped):
        odd, dropped = odd + 1, 0
    return EventBatch(events, repeats, dropped, odd)


def _read(raw: object, parse: Callable[[object], T | None]) -> tuple[list[T], int]:
    """What `parse` makes of each entry of a list (at most MAX_ENTRIES), and how many
    entries it could not read."""
    read: list[T] = []
    odd = 0
    for entry in (raw if isinstance(raw, list) else [])[:MAX_ENTRIES]:
        value = parse(entry)
        if value is None:
            odd += 1
        else:
            read.append(value)
    return read, odd


def _event_from_wire(entry: object) -> ConnectionEvent | None:
    if not isinstance(entry, dict) or not _is_agent_and_kind(entry):
        return None
    at, code, seconds = entry.get("at"), entry.get("code"), entry.get("seconds")
    if not _is_time(at) or not (code is None or _is_close_code(code)):
        return None
    if seconds is not None and not _is_time(seconds):
        return None
    length = None if seconds is None else float(seconds)
    return ConnectionEvent(entry["agent_id"], entry["event"], float(at), code, length)


def _repeats_from_wire(entry: object) -> EventRepeats | None:
    if not isinstance(entry, dict) or not _is_agent_and_kind(entry):
        return None
    count, last_at = entry.get("count"), entry.get("last_at")
    if not _is_count(count) or count == 0 or not _is_time(last_at):
        return None
    return EventRepeats(entry["agent_id"], entry["event"], count, float(last_at))


def _is_agent_and_kind(entry: dict[str, Any]) -> bool:
    agent_id = entry.get("agent_id")
    return (
        isinstance(agent_id, str)
        and 0 < len(agent_id) <= MAX_ID_LENGTH
        and not UNPRINTABLE.search(agent_id)
        and entry.get("event") in ConnectionEventKind.FROM_ROUTER
    )


def _is_time(value: object) -> TypeGuard[float]:
    """Seconds (a time since the epoch, or a length): a finite number, not negative."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and value >= 0


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _is_close_code(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 1000 <= value <= 4999
