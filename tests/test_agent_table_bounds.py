"""The router's agent table stays as large as the work going on: records only for agents
the backend named, finished ones forgotten after `status_retention`, and statuses sent
in packets that stay small however many agents there are. Hub and table on a task.Clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from architect.config import RouterConfig
from architect.protocol import (
    ALIVE,
    HEARTBEAT,
    MAX_ID_LENGTH,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    UPDATE_STATUS,
    CloseCode,
    Packet,
    Status,
)
from architect.router.hub import RouterHub
from tests.fakes import FakeLink
from tests.test_hub import connect_backend
from tests.test_router_web import Edge


def make_hub(tmp_path: Path, **settings: Any) -> tuple[Clock, RouterHub, FakeLink]:
    clock = Clock()
    config = RouterConfig(upload_dir=tmp_path, trust_loopback=True, **settings)
    hub = RouterHub(clock, config)
    return clock, hub, connect_backend(hub)


def test_a_socket_for_an_agent_never_named_is_not_taken(tmp_path: Path) -> None:
    clock, hub, backend = make_hub(tmp_path, first_packet_timeout=10.0)
    page = FakeLink("page")
    hub.link_opened(page)
    with capturedLogs() as events:
        for n in range(1000):
            hub.link_packet(page, Packet(ALIVE, f"invented-{n}"))
            hub.link_packet(page, Packet(HEARTBEAT, f"invented-{n}"))
        hub.link_packet(page, Packet(ALIVE, "x" * 100_000))
    assert hub.agents.records == {} and hub.link_agents == {}
    assert page.sent == [] and backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE) == []
    assert len(events) == 1 and len(str(events[0])) < 2_000  # one line, the id cut short
    clock.advance(10.0)
    assert page.close_code == CloseCode.SILENT


def test_a_socket_waiting_for_its_agent_is_taken_once_the_backend_names_it(
    tmp_path: Path,
) -> None:
    """A router that restarted knows no agent until the backend tells it their statuses:
    a page back before that is taken at its next packet (a heartbeat)."""
    clock, hub, backend = make_hub(tmp_path, first_packet_timeout=10.0)
    page = FakeLink("page")
    hub.link_opened(page)
    hub.link_packet(page, Packet(ALIVE, "a-1"))
    assert hub.link_agents == {}
    hub.link_packet(backend, Packet(UPDATE_STATUS, "a-1", {"status": Status.IN_TASK}))
    hub.link_packet(page, Packet(HEARTBEAT, "a-1"))
    assert hub.link_agents == {page: "a-1"}
    assert page.of_type(UPDATE_STATUS)[-1].data == {"status": Status.IN_TASK}
    assert page.sent[-1].packet_type == HEARTBEAT
    clock.advance(10.0)
    assert not page.closed


def test_an_id_past_the_length_cap_names_no_agent(tmp_path: Path) -> None:
    _, hub, backend = make_hub(tmp_path)
    long_id = "a" * (MAX_ID_LENGTH + 1)
    hub.link_packet(backend, Packet(UPDATE_STATUS, long_id, {"status": Status.IN_TASK}))
    page = FakeLink("page")
    hub.link_packet(page, Packet(ALIVE, long_id))
    assert hub.link_agents == {}


def finish(hub: RouterHub, backend: FakeLink, agent_id: str, status: str) -> None:
    hub.link_packet(backend, Packet(UPDATE_STATUS, agent_id, {"status": status}))


def test_a_finished_agent_is_forgotten_after_status_retention(tmp_path: Path) -> None:
    clock, hub, backend = make_hub(tmp_path, status_retention=600.0)
    page = FakeLink("page")
    for agent_id in ("done", "working", "left"):
        finish(hub, backend, agent_id, Status.IN_TASK)
    hub.link_packet(page, Packet(ALIVE, "done"))
    finish(hub, backend, "done", Status.COMPLETED)
    clock.advance(300.0)
    finish(hub, backend, "left", Status.DISCONNECT)
    clock.advance(299.0)
    # Within the retention its page still learns what happened, and the backend too.
    again = FakeLink("again")
    hub.link_packet(again, Packet(ALIVE, "left"))
    assert again.sent[-1].data == {"status": Status.DISCONNECT}
    clock.advance(1.0)
    assert set(hub.agents.records) == {"working", "left"}
    assert page.close_code == CloseCode.FINISHED and page not in hub.link_agents
    clock.advance(300.0)
    assert set(hub.agents.records) == {"working"} and again.close_code == CloseCode.FINISHED
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))
    assert [p.data for p in backend.of_type(RETURN_STATUSES)] == [{"working": Status.IN_TASK}, {}]
    assert [c for c in clock.getDelayedCalls() if c.active()] == []


def test_statuses_go_in_packets_that_stay_small_then_an_empty_one(tmp_path: Path) -> None:
    for limit, count in [(10_000, 0), (10_000, 1), (10_000, 1_000), (1024 * 1024, 20_000)]:
        _, hub, backend = make_hub(tmp_path, max_message_bytes=limit)
        for n in range(count):
            agent_id = f"{n:06d}" + "é" * (MAX_ID_LENGTH - 6)  # the longest ids, escaped
            finish(hub, backend, agent_id, Status.WAITING)
        hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))
        answer = backend.of_type(RETURN_STATUSES)
        assert answer[-1].data == {} and all(p.data for p in answer[:-1])
        assert sum(len(p.data) for p in answer) == len({a for p in answer for a in p.data}) == count
        assert max(len(p.to_json()) for p in answer) <= min(limit // 2, 256 * 1024) + 1_000


@pytest_twisted.ensureDeferred
async def test_an_agent_id_past_the_length_cap_is_400_over_http(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    long_id = "a" * (MAX_ID_LENGTH + 1)
    reply = await edge.local.reply(
        edge.local.send_post(
            "/submit_task", json.dumps({"USED_AGENT_ID": long_id, "final_data": {}}).encode()
        )
    )
    assert reply.code == 400 and long_id not in reply.body.decode()
