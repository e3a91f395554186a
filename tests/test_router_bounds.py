"""The router's bounds on a task.Clock with fake links: each agent's outbox and replay buffer
by bytes as well as by packets, the backend queue by bytes, the rate of a browser's live
updates. Each bound hit is logged once, not once per packet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from architect.protocol import (
    AGENT_DETAILS,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    SUBMIT_UNIT,
    Packet,
    data_size,
)
from architect.router.errors import NoBackend
from architect.router.hub import RouterHub
from architect.router.state import AgentTable
from tests.fakes import FakeLink
from tests.test_hub import connect_agent, connect_backend, make_hub

GRACE = 10.0
SILENCE = 15.0


def sized(n: int, size: int) -> dict[str, Any]:
    """Data numbered `n` whose JSON is `size` bytes long."""
    data: dict[str, Any] = {"n": n, "pad": ""}
    data["pad"] = "x" * (size - data_size(data))
    assert data_size(data) == size
    return data


def update(n: int, size: int = 1000) -> Packet:
    return Packet(CLIENT_BOUND_LIVE_UPDATE, "a1", sized(n, size))


def warnings(events: Sequence[dict[str, Any]], words: str) -> list[str]:
    texts = [formatEvent(e) for e in events if e.get("log_level") >= LogLevel.warn]
    return [t for t in texts if words in t]


# --- outbox and replay buffer ---


def test_the_outbox_keeps_the_newest_packets_within_its_bytes() -> None:
    table = AgentTable(Clock(), GRACE, SILENCE, 100, max_outbox_bytes=3000)
    with capturedLogs() as events:
        for n in range(10):
            table.deliver("a1", update(n))
    link = FakeLink()
    table.attach("a1", link)
    assert [p.data["n"] for p in link.sent] == [7, 8, 9]
    assert len(warnings(events, "outbox")) == 1


def test_a_full_outbox_by_packets_is_logged_once() -> None:
    table = AgentTable(Clock(), GRACE, SILENCE, 3)
    with capturedLogs() as events:
        for n in range(10):
            table.deliver("a1", update(n, 20))
    assert len(warnings(events, "outbox")) == 1


def test_a_packet_larger_than_the_whole_outbox_is_not_kept() -> None:
    table = AgentTable(Clock(), GRACE, SILENCE, 100, max_outbox_bytes=3000)
    table.deliver("a1", update(1, 5000))
    record = table.get("a1")
    assert record is not None and record.outbox is None  # no empty container kept either


def test_the_replay_buffer_keeps_the_newest_updates_within_its_bytes() -> None:
    table = AgentTable(Clock(), GRACE, SILENCE, 100, max_outbox_bytes=3000)
    first = FakeLink("first")
    table.attach("a1", first)
    with capturedLogs() as events:
        for n in range(10):
            table.deliver("a1", update(n))
    assert len(first.sent) == 10
    table.detach("a1", first)
    second = FakeLink("second")
    table.attach("a1", second)
    assert [p.data["n"] for p in second.sent] == [7, 8, 9]
    assert len(warnings(events, "replay")) == 1


def test_each_agent_is_logged_once() -> None:
    table = AgentTable(Clock(), GRACE, SILENCE, 100, max_outbox_bytes=3000)
    with capturedLogs() as events:
        for n in range(10):
            table.deliver("a1", update(n))
            table.deliver("a2", Packet(CLIENT_BOUND_LIVE_UPDATE, "a2", sized(n, 1000)))
    found = warnings(events, "outbox")
    assert len(found) == 2
    assert any("a1" in t for t in found) and any("a2" in t for t in found)


# --- the hub: the backend queue, the rate of live updates ---


def register(hub: RouterHub, backend: FakeLink, agent_id: str) -> None:
    hub.request_agent({"worker_name": "w"}, 1.0, None)
    request = backend.of_type(REGISTER_AGENT)[-1]
    answer = {"request_id": request.data["request_id"], "agent_id": agent_id, "worker_id": "w1"}
    hub.link_packet(backend, Packet(AGENT_DETAILS, request.subject_id, answer))


def test_the_backend_queue_is_bounded_by_bytes(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path, max_backend_queue_bytes=3000)
    first = connect_backend(hub)
    register(hub, first, "alice")
    alice = connect_agent(hub, "alice")
    hub.link_lost(first)
    with capturedLogs() as events:
        hub.submit(SUBMIT_UNIT, "alice", sized(1, 1400), None, None)
        hub.submit(SUBMIT_UNIT, "alice", sized(2, 1400), None, None)
        with pytest.raises(NoBackend):  # the web edge answers 503
            hub.submit(SUBMIT_UNIT, "alice", sized(3, 1400), None, None)
        hub.link_packet(alice, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", sized(4, 1400)))
        hub.log_error("alice", "x" * 1000, None, None)
    assert len(warnings(events, "queue")) == 1
    backend = connect_backend(hub)
    assert [p.data["n"] for p in backend.sent] == [1, 2]


def test_a_new_absence_of_the_backend_is_logged_again(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path, max_backend_queue_packets=1)
    backend = connect_backend(hub)
    register(hub, backend, "alice")
    with capturedLogs() as events:
        for _ in range(2):
            hub.link_lost(backend)
            for n in range(3):
                hub.log_error("alice", n, None, None)
            backend = connect_backend(hub)
    assert len(warnings(events, "queue")) == 2


def test_live_updates_over_the_rate_are_dropped_and_the_socket_stays_open(
    tmp_path: Path,
) -> None:
    clock, hub = make_hub(tmp_path, max_updates_per_second=2.0, max_update_burst=3)
    backend = connect_backend(hub)
    alice, bob = connect_agent(hub, "alice"), connect_agent(hub, "bob")
    with capturedLogs() as events:
        for n in range(10):
            hub.link_packet(alice, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", {"n": n}))
        hub.link_packet(bob, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "bob", {"n": 100}))
        hub.link_packet(alice, Packet(HEARTBEAT, "alice"))
        clock.advance(1.0)  # two more
        for n in range(10, 20):
            hub.link_packet(alice, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", {"n": n}))
    taken = [p.data["n"] for p in backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)]
    assert taken == [0, 1, 2, 100, 10, 11]
    assert not alice.closed
    assert alice.of_type(HEARTBEAT)  # other packets are not counted
    assert len(warnings(events, "live updates a second")) == 1


def test_the_rate_is_the_agents_whatever_its_sockets(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path, max_updates_per_second=1.0, max_update_burst=2)
    backend = connect_backend(hub)
    for n in range(4):
        link = connect_agent(hub, "alice")  # a new socket does not bring new tokens
        hub.link_packet(link, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", {"n": n}))
        hub.link_lost(link)
    assert [p.data["n"] for p in backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)] == [0, 1]
