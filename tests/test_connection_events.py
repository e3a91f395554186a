"""Connection events on the router's side, with fake links and a fake clock: where the
hub makes them, the bounded buffer they wait in, the packets they go in (only to a backend
that took the events extension), and how a backend reads those packets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from architect.connection_events import (
    EVENTS_KEPT_PER_KIND,
    ConnectionEvent,
    EventRepeats,
    from_wire,
    to_wire,
)
from architect.connection_events import ConnectionEventKind as Kind
from architect.protocol import (
    ALIVE,
    CONNECTION_EVENTS,
    EVENTS,
    HEARTBEAT,
    MAX_ID_LENGTH,
    MEPHISTO,
    Packet,
)
from architect.router.event_buffer import BATCH, SEND_EVERY, EventBuffer
from architect.router.hub import RouterHub
from tests.fakes import FakeLink
from tests.test_hub import make_hub


def connect_backend(hub: RouterHub, extensions: list[str] | None) -> FakeLink:
    backend = FakeLink("backend")
    data = {} if extensions is None else {"extensions": extensions}
    hub.link_packet(backend, Packet(ALIVE, MEPHISTO, data), from_loopback=True)
    assert hub.backend is backend
    return backend


def open_socket(hub: RouterHub, agent_id: str) -> FakeLink:
    link = FakeLink(agent_id)
    hub.link_packet(link, Packet(ALIVE, agent_id))
    assert hub.link_agents.get(link) == agent_id
    return link


def received(backend: FakeLink) -> list[ConnectionEvent]:
    events: list[ConnectionEvent] = []
    for packet in backend.of_type(CONNECTION_EVENTS):
        batch = from_wire(packet.data)
        assert batch.odd == 0
        events.extend(batch.events)
    return events


# --- where the hub makes them ---


def test_a_pages_sockets_and_heartbeats_make_its_events_in_order(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path, heartbeat_gap=12.0, heartbeat_timeout=60.0)
    backend = connect_backend(hub, [EVENTS])
    hub.agents.ensure("a1")
    first = open_socket(hub, "a1")
    hub.link_packet(first, Packet(HEARTBEAT, "a1"))
    assert backend.of_type(CONNECTION_EVENTS) == []  # batched: not one packet an event
    clock.advance(1)
    hub.link_lost(first, None)  # dropped without a close frame
    second = open_socket(hub, "a1")
    clock.advance(6)
    hub.link_packet(second, Packet(HEARTBEAT, "a1"))  # 7 s after the last: no gap
    clock.advance(12.5)
    hub.link_packet(second, Packet(HEARTBEAT, "a1"))  # 12.5 s: a gap
    hub.link_lost(second, 1001)
    clock.advance(SEND_EVERY)
    assert received(backend) == [
        ConnectionEvent("a1", Kind.SOCKET_OPEN, 0),
        ConnectionEvent("a1", Kind.SOCKET_CLOSE, 1, code=1006),
        ConnectionEvent("a1", Kind.RELOAD, 1),
        ConnectionEvent("a1", Kind.HEARTBEAT_GAP, 19.5, seconds=12.5),
        ConnectionEvent("a1", Kind.SOCKET_CLOSE, 19.5, code=1001),
    ]
    assert len(backend.of_type(CONNECTION_EVENTS)) == 3  # one per SEND_EVERY with events
    assert not hub.events


def test_a_socket_that_never_spoke_for_an_agent_makes_no_event(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    backend = connect_backend(hub, [EVENTS])
    stranger = FakeLink("stranger")
    hub.link_opened(stranger)
    hub.link_packet(stranger, Packet(ALIVE, "never-named"))
    hub.link_lost(stranger, 1000)
    clock.advance(SEND_EVERY)
    assert backend.of_type(CONNECTION_EVENTS) == []


def test_a_backend_that_did_not_take_the_extension_gets_no_event_packet(
    tmp_path: Path,
) -> None:
    clock, hub = make_hub(tmp_path)
    hub.agents.ensure("a1")
    hub.link_lost(open_socket(hub, "a1"), 1006)  # before any backend: kept for one
    assert hub.events
    mephistos = connect_backend(hub, None)  # Mephisto's backend says alive with {}
    assert not hub.events  # what waited is let go: it would not know it
    for _ in range(3):
        hub.link_lost(open_socket(hub, "a1"), 1006)
    clock.advance(10 * SEND_EVERY)
    assert mephistos.of_type(CONNECTION_EVENTS) == []
    assert not hub.events and not hub.events.waiting_of
    ours = connect_backend(hub, ["confirm", EVENTS])  # ours replaces it: it gets them
    hub.link_lost(open_socket(hub, "a1"), 1000)
    clock.advance(SEND_EVERY)
    assert [e.event for e in received(ours)] == [Kind.RELOAD, Kind.SOCKET_CLOSE]


def test_events_while_the_backend_is_away_go_to_the_next_one(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    first = connect_backend(hub, [EVENTS])
    hub.agents.ensure("a1")
    socket = open_socket(hub, "a1")
    hub.link_lost(first, 1006)
    hub.link_lost(socket, 1006)
    clock.advance(SEND_EVERY)
    assert received(first) == []  # it was gone before the batch went
    second = connect_backend(hub, [EVENTS])
    clock.advance(SEND_EVERY)
    assert [e.event for e in received(second)] == [Kind.SOCKET_OPEN, Kind.SOCKET_CLOSE]


# --- the bound ---


def test_a_flapping_page_keeps_at_most_the_bound_and_counts_the_rest(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    backend = connect_backend(hub, [EVENTS])
    hub.agents.ensure("a1")
    hub.agents.ensure("a2")
    for _ in range(10_000):
        clock.advance(0.00001)
        hub.link_lost(open_socket(hub, "a1"), 1006)
    open_socket(hub, "a2")  # another agent's event is not crowded out
    waiting = len(hub.events.waiting)
    # 50 closes, the first open, 50 reloads (the others), a2's open
    assert waiting == 2 * EVENTS_KEPT_PER_KIND + 2
    clock.advance(SEND_EVERY)
    (packet,) = backend.of_type(CONNECTION_EVENTS)
    batch = from_wire(packet.data)
    kinds = [e.event for e in batch.events]
    assert kinds.count(Kind.SOCKET_CLOSE) == EVENTS_KEPT_PER_KIND
    assert kinds.count(Kind.RELOAD) == EVENTS_KEPT_PER_KIND
    assert (kinds.count(Kind.SOCKET_OPEN), batch.events[-1].agent_id) == (2, "a2")
    counts = {r.event: r.repeats for r in batch.repeats}
    assert counts == {
        Kind.SOCKET_CLOSE: 10_000 - EVENTS_KEPT_PER_KIND,
        Kind.RELOAD: 10_000 - 1 - EVENTS_KEPT_PER_KIND,
    }
    assert all(r.last_at == pytest.approx(0.1) for r in batch.repeats)
    assert not hub.events and not hub.events.waiting_of and not hub.events.counted


def test_the_buffer_drops_and_counts_past_its_size_and_sends_bounded_packets() -> None:
    buffer = EventBuffer(max_waiting=1200)
    for i in range(1500):
        buffer.add(ConnectionEvent(f"agent-{i}", Kind.SOCKET_OPEN, float(i)))
    assert len(buffer.waiting) == 1200
    packets = list(buffer.packets())
    sizes = [len(p.data["events"]) for p in packets]
    assert sizes == [BATCH, BATCH, 1200 - 2 * BATCH]
    assert [p.data.get("dropped") for p in packets] == [300, None, None]
    assert not buffer and list(buffer.packets()) == []


# --- the wire ---


def test_events_read_back_from_the_wire_as_they_were_sent() -> None:
    events = [
        ConnectionEvent("a1", Kind.SOCKET_CLOSE, 5.5, code=4004),
        ConnectionEvent("a1", Kind.HEARTBEAT_GAP, 6.0, seconds=13.25),
    ]
    repeats = [EventRepeats("a1", Kind.RELOAD, 7, 9.0)]
    batch = from_wire(to_wire(events, repeats, 3))
    assert (batch.events, batch.repeats, batch.dropped, batch.odd) == (events, repeats, 3, 0)


@pytest.mark.parametrize(
    "entry",
    [
        "not an object",
        {"agent_id": "a1", "event": "router_lost", "at": 1.0},  # not a router's to say
        {"agent_id": "a1", "event": "made_up", "at": 1.0},
        {"agent_id": "", "event": "reload", "at": 1.0},
        {"agent_id": "a" * (MAX_ID_LENGTH + 1), "event": "reload", "at": 1.0},
        {"agent_id": "a\x00", "event": "reload", "at": 1.0},
        {"agent_id": 7, "event": "reload", "at": 1.0},
        {"agent_id": "a1", "event": "reload"},
        {"agent_id": "a1", "event": "reload", "at": -1},
        {"agent_id": "a1", "event": "reload", "at": True},
        {"agent_id": "a1", "event": "reload", "at": "1"},
        {"agent_id": "a1", "event": "socket_close", "at": 1.0, "code": 99999},
        {"agent_id": "a1", "event": "socket_close", "at": 1.0, "code": 1000.5},
        {"agent_id": "a1", "event": "heartbeat_gap", "at": 1.0, "seconds": "long"},
    ],
)
def test_an_odd_entry_is_left_out_and_counted(entry: Any) -> None:
    good = {"agent_id": "a2", "event": "reload", "at": 2.0}
    batch = from_wire({"events": [entry, good]})
    assert batch.events == [ConnectionEvent("a2", Kind.RELOAD, 2.0)]
    assert batch.odd == 1


@pytest.mark.parametrize(
    "data",
    [
        {"events": "many"},
        {"events": [], "repeats": [{"agent_id": "a1", "event": "reload", "count": 0}]},
        {"events": [], "repeats": [{"agent_id": "a1", "event": "reload", "count": -3}]},
        {"events": [], "dropped": -1},
        {"events": [], "dropped": "lots"},
    ],
)
def test_odd_counts_are_nothing(data: dict[str, Any]) -> None:
    batch = from_wire(data)
    assert (batch.events, batch.repeats, batch.dropped) == ([], [], 0)
