"""The router hub with fake links and a fake clock: routing, auth, binding, pending requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from architect.config import RouterConfig
from architect.protocol import (
    AGENT_DETAILS,
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    LOG_ERROR,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    CloseCode,
    Packet,
    Status,
)
from architect.router.errors import BackendTimeout, NoBackend, UnknownAgent
from architect.router.hub import RouterHub
from tests.fakes import FakeLink


def make_hub(tmp_path: Path, **overrides: Any) -> tuple[Clock, RouterHub]:
    clock = Clock()
    # Routing, not access, is tested here: a loopback backend may connect without a token.
    config = RouterConfig(upload_dir=tmp_path, **{"trust_loopback": True, **overrides})
    return clock, RouterHub(clock, config)


def connect_backend(hub: RouterHub) -> FakeLink:
    backend = FakeLink("backend")
    hub.link_packet(backend, Packet(ALIVE, MEPHISTO), from_loopback=True)
    assert hub.backend is backend
    return backend


def connect_agent(hub: RouterHub, agent_id: str) -> FakeLink:
    """A page's socket saying `alive` for an agent the backend named (the router takes
    sockets for no other: see test_a_socket_for_an_agent_never_named_is_not_taken)."""
    hub.agents.ensure(agent_id)
    link = FakeLink(agent_id)
    hub.link_packet(link, Packet(ALIVE, agent_id))
    return link


def results(d: Any) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def register(hub: RouterHub, backend: FakeLink, agent_id: str = "agent-1") -> dict[str, Any]:
    got = results(hub.request_agent({"worker_name": "w"}, 1.0, None))
    request = backend.of_type(REGISTER_AGENT)[-1]
    answer = {"request_id": request.data["request_id"], "agent_id": agent_id, "worker_id": "w1"}
    hub.link_packet(backend, Packet(AGENT_DETAILS, request.subject_id, answer))
    assert got and isinstance(got[0], dict)
    return got[0]


# --- backend authentication ---


def test_loopback_backend_accepted_without_token(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    connect_backend(hub)


def test_remote_backend_refused_without_token(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    intruder = FakeLink("intruder")
    hub.link_packet(intruder, Packet(ALIVE, MEPHISTO), from_loopback=False)
    assert hub.backend is None
    assert intruder.closed and intruder.close_code == CloseCode.REFUSED


@pytest.mark.parametrize(
    ("token", "accepted"), [("s3cret", True), ("wrong", False), (None, False), ("", False)]
)
def test_token_is_required_when_configured(
    tmp_path: Path, token: str | None, accepted: bool
) -> None:
    _, hub = make_hub(tmp_path, backend_token="s3cret")
    link = FakeLink()
    # Loopback does not excuse a missing token once one is configured.
    hub.link_packet(link, Packet(ALIVE, MEPHISTO), token=token, from_loopback=True)
    assert (hub.backend is link) is accepted
    assert link.closed is not accepted


def test_new_backend_replaces_the_old_one(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    old = connect_backend(hub)
    new = connect_backend(hub)
    assert hub.backend is new
    assert old.closed and old.close_code == CloseCode.REPLACED
    # The old link's late packets are ignored, and its close does not unseat the new one.
    hub.link_packet(old, Packet(REQUEST_STATUSES, MEPHISTO))
    hub.link_lost(old)
    assert old.of_type(RETURN_STATUSES) == []
    assert hub.backend is new


# --- socket binding ---


def test_socket_speaks_only_for_its_agent(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    mallory = connect_agent(hub, "mallory")
    hub.link_packet(mallory, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", {"x": 1}))
    hub.link_packet(mallory, Packet(HEARTBEAT, "alice"))
    assert backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE) == []
    assert mallory.of_type(HEARTBEAT) == []
    hub.link_packet(mallory, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "mallory", {"x": 2}))
    assert [p.data for p in backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)] == [{"x": 2}]


def test_browser_cannot_claim_to_be_the_backend_after_alive(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    link = connect_agent(hub, "alice")
    hub.link_packet(link, Packet(ALIVE, MEPHISTO), from_loopback=True)
    assert hub.backend is None


# --- forwarding and statuses ---


def test_live_updates_flow_both_ways_with_timestamps(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    clock.advance(100)
    backend = connect_backend(hub)
    alice = connect_agent(hub, "alice")
    hub.link_packet(alice, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", {"text": "hi"}))
    (up,) = backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)
    assert up.router_incoming_timestamp == 100 and up.router_outgoing_timestamp == 100
    hub.link_packet(backend, Packet(CLIENT_BOUND_LIVE_UPDATE, "alice", {"text": "yo"}))
    assert [p.data for p in alice.of_type(CLIENT_BOUND_LIVE_UPDATE)] == [{"text": "yo"}]


def test_heartbeat_reply_carries_ping_in_ms_and_cached_status(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    clock.advance(1000.5)
    backend = connect_backend(hub)
    alice = connect_agent(hub, "alice")
    hub.link_packet(backend, Packet(UPDATE_STATUS, "alice", {"status": Status.IN_TASK}))
    clock.advance(2)
    hub.link_packet(alice, Packet(HEARTBEAT, "alice"))
    (reply,) = alice.of_type(HEARTBEAT)
    assert reply.data == {"last_mephisto_ping": 1000500, "status": Status.IN_TASK}


def test_status_cache_survives_backend_loss_and_returns_on_alive(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    alice = connect_agent(hub, "alice")
    hub.link_packet(backend, Packet(UPDATE_STATUS, "alice", {"status": Status.WAITING}))
    assert [p.data for p in alice.of_type(UPDATE_STATUS)] == [{"status": Status.WAITING}]
    hub.link_lost(backend)
    hub.link_lost(alice)
    again = connect_agent(hub, "alice")
    assert [p.data for p in again.of_type(UPDATE_STATUS)] == [{"status": Status.WAITING}]


def test_client_bound_packets_wait_in_the_outbox(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    alice = connect_agent(hub, "alice")
    hub.link_lost(alice)
    hub.link_packet(backend, Packet(CLIENT_BOUND_LIVE_UPDATE, "alice", {"n": 1}))
    hub.link_packet(backend, Packet(CLIENT_BOUND_LIVE_UPDATE, "alice", {"n": 2}))
    assert alice.of_type(CLIENT_BOUND_LIVE_UPDATE) == []
    again = connect_agent(hub, "alice")
    assert [p.data for p in again.of_type(CLIENT_BOUND_LIVE_UPDATE)] == [{"n": 1}, {"n": 2}]


def test_backend_bound_packets_wait_for_the_backend(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    first = connect_backend(hub)
    register(hub, first, "alice")
    hub.link_lost(first)
    alice = connect_agent(hub, "alice")
    hub.link_packet(alice, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "alice", {"n": 1}))
    hub.submit(SUBMIT_UNIT, "alice", {"answer": 42}, None, None)
    backend = connect_backend(hub)
    assert [(p.packet_type, p.data) for p in backend.sent] == [
        (MEPHISTO_BOUND_LIVE_UPDATE, {"n": 1}),
        (SUBMIT_UNIT, {"answer": 42}),
    ]


def test_full_backend_queue_refuses_submissions(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path, max_backend_queue_packets=2)
    first = connect_backend(hub)
    register(hub, first, "alice")
    hub.link_lost(first)
    hub.submit(SUBMIT_UNIT, "alice", {"n": 1}, None, None)
    hub.submit(SUBMIT_UNIT, "alice", {"n": 2}, None, None)
    with pytest.raises(NoBackend):
        hub.submit(SUBMIT_UNIT, "alice", {"n": 3}, None, None)
    backend = connect_backend(hub)
    assert [p.data for p in backend.of_type(SUBMIT_UNIT)] == [{"n": 1}, {"n": 2}]


def test_request_statuses_answers_every_known_agent(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    alice = connect_agent(hub, "alice")
    connect_agent(hub, "bob")
    hub.link_packet(backend, Packet(UPDATE_STATUS, "alice", {"status": Status.IN_TASK}))
    hub.link_packet(alice, Packet(HEARTBEAT, "alice"))
    clock.advance(15)
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))
    answer, end = backend.of_type(RETURN_STATUSES)
    assert end.data == {}  # the answer's end
    assert answer.subject_id == MEPHISTO
    assert answer.data == {"alice": Status.DISCONNECT, "bob": Status.NONE}


# --- pending HTTP requests ---


def test_request_agent_without_backend_is_refused_at_once(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    with pytest.raises(NoBackend):
        hub.request_agent({}, None, None)


def test_an_embedded_router_holds_registrations_until_its_backend_is_up(tmp_path: Path) -> None:
    """Its backend is in the same process, opening its database (longer on PostgreSQL):
    a page that registers meanwhile waits for it rather than getting a 503."""
    clock = Clock()
    hub = RouterHub(clock, RouterConfig(upload_dir=tmp_path, request_timeout=5.0), False)
    early = results(hub.request_agent({"worker_name": "w"}, None, None))
    clock.advance(2)
    assert early == []
    backend = FakeLink("embedded backend")
    hub.backend_connected(backend)
    [request] = backend.of_type(REGISTER_AGENT)
    answer = {"request_id": request.data["request_id"], "agent_id": "a-1", "worker_id": "w1"}
    hub.link_packet(backend, Packet(AGENT_DETAILS, request.subject_id, answer))
    assert early and early[0]["data"]["agent_id"] == "a-1"
    # Once it came, its absence is a 503 again (the daemon is stopping).
    hub.link_lost(backend)
    with pytest.raises(NoBackend):
        hub.request_agent({"worker_name": "w"}, None, None)


def test_a_backend_that_never_comes_times_the_held_registration_out(tmp_path: Path) -> None:
    clock = Clock()
    hub = RouterHub(clock, RouterConfig(upload_dir=tmp_path, request_timeout=5.0), False)
    held = results(hub.request_agent({"worker_name": "w"}, None, None))
    clock.advance(5)
    assert held and held[0].check(BackendTimeout)


def test_request_agent_is_answered_with_the_whole_packet(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    answer = register(hub, backend, "agent-7")
    assert answer["packet_type"] == AGENT_DETAILS
    assert answer["data"]["agent_id"] == "agent-7"
    assert hub.agents.get("agent-7") is not None


def test_request_ids_are_random(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    for _ in range(3):
        hub.request_agent({}, None, None)
    ids = [p.data["request_id"] for p in backend.of_type(REGISTER_AGENT)]
    assert len(set(ids)) == 3 and all(len(i) >= 32 for i in ids)


def test_request_times_out_exactly_at_request_timeout(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path, request_timeout=30.0)
    connect_backend(hub)
    got = results(hub.request_agent({}, None, None))
    clock.advance(29.5)
    assert got == []
    clock.advance(0.5)
    assert isinstance(got[0], Failure) and got[0].check(BackendTimeout)
    assert len(hub.requests) == 0


def test_late_answer_after_timeout_is_dropped(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path, request_timeout=1.0)
    backend = connect_backend(hub)
    got = results(hub.request_agent({}, None, None))
    clock.advance(1)
    request = backend.of_type(REGISTER_AGENT)[0]
    hub.link_packet(backend, Packet(AGENT_DETAILS, "x", {"request_id": request.subject_id}))
    assert len(got) == 1


def test_cancelled_request_is_forgotten(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    connect_backend(hub)
    d = hub.request_agent({}, None, None)
    results(d)
    d.cancel()
    assert len(hub.requests) == 0
    assert clock.getDelayedCalls() == []


def test_unanswered_requests_go_to_a_reconnecting_backend(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    first = connect_backend(hub)
    got = results(hub.request_agent({"worker_name": "w"}, None, None))
    hub.link_lost(first)
    second = connect_backend(hub)
    (request,) = second.of_type(REGISTER_AGENT)
    hub.link_packet(second, Packet(AGENT_DETAILS, "x", {"request_id": request.subject_id}))
    assert got and got[0]["data"]["request_id"] == request.subject_id


def test_submit_onboarding_strips_agent_id_and_adds_request_id(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    register(hub, backend, "onboarding-1")
    got = results(
        hub.submit_onboarding(
            "onboarding-1",
            {"USED_AGENT_ID": "onboarding-1", "onboarding_data": {"a": 1}},
            2.0,
            None,
        )
    )
    (packet,) = backend.of_type(SUBMIT_ONBOARDING)
    assert packet.subject_id == "onboarding-1"
    assert packet.data == {"onboarding_data": {"a": 1}, "request_id": packet.data["request_id"]}
    hub.link_packet(backend, Packet(AGENT_DETAILS, "x", {"request_id": packet.data["request_id"]}))
    assert got and got[0]["packet_type"] == AGENT_DETAILS


def test_submissions_for_unknown_agents_are_refused(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    connect_backend(hub)
    with pytest.raises(UnknownAgent):
        hub.submit(SUBMIT_UNIT, "nobody", {}, None, None)
    with pytest.raises(UnknownAgent):
        hub.submit_onboarding("nobody", {}, None, None)


# --- task config ---


@pytest.mark.parametrize("version", ["2.0.3", "2.0.4"])
def test_current_client_versions_get_no_warning(tmp_path: Path, version: str) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    answer = hub.task_config_for({"title": "t"}, version)
    assert answer == {"title": "t", "mephisto_task_version": version}
    assert backend.of_type(LOG_ERROR) == []


def test_other_client_version_warns_the_backend(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    answer = hub.task_config_for({}, "1.0.0")
    assert answer["mephisto_task_version"] == "2.0.4"
    (warning,) = backend.of_type(LOG_ERROR)
    assert warning.subject_id == "mephisto"
    assert warning.data["error_type"] == "version-mismatch"
    assert warning.data["received_version"] == "1.0.0"
    assert warning.data["expected_version"] == "2.0.4"
    # Mephisto's backend prints `text` (and only that) of a version mismatch.
    assert "1.0.0" in warning.data["text"] and "2.0.4" in warning.data["text"]


def test_a_client_version_is_reported_only_as_long_as_a_version_is(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    hub.task_config_for({}, "9" * 10_000)
    (warning,) = backend.of_type(LOG_ERROR)
    assert warning.data["received_version"] == "9" * 64
    assert len(warning.data["text"]) < 400


def test_an_error_log_names_a_known_agent(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    with pytest.raises(UnknownAgent):
        hub.log_error("nobody", {"e": 1}, None, None)
    assert backend.of_type(LOG_ERROR) == []


def test_registration_answer_with_history_clears_the_replay(tmp_path: Path) -> None:
    _, hub = make_hub(tmp_path)
    backend = connect_backend(hub)
    register(hub, backend, "alice")
    first = connect_agent(hub, "alice")
    hub.link_packet(backend, Packet(CLIENT_BOUND_LIVE_UPDATE, "alice", {"update_id": "u1"}))
    hub.link_lost(first)
    # The page reloads: its registration answer carries the history, so nothing is replayed.
    got = results(hub.request_agent({"worker_name": "w"}, None, None))
    request = backend.of_type(REGISTER_AGENT)[-1]
    details = {
        "request_id": request.subject_id,
        "agent_id": "alice",
        "init_task_data": {"past_live_updates": [{"update_id": "u1"}]},
    }
    hub.link_packet(backend, Packet(AGENT_DETAILS, request.subject_id, details))
    assert got
    again = connect_agent(hub, "alice")
    assert again.of_type(CLIENT_BOUND_LIVE_UPDATE) == []


def test_a_socket_that_says_nothing_is_closed_after_the_first_packet_timeout(
    tmp_path: Path,
) -> None:
    clock, hub = make_hub(tmp_path, first_packet_timeout=30.0)
    silent, talking, gone = FakeLink("silent"), FakeLink("talking"), FakeLink("gone")
    for link in (silent, talking, gone):
        hub.link_opened(link)
    clock.advance(29.0)
    hub.agents.ensure("agent-1")
    hub.link_packet(talking, Packet(ALIVE, "agent-1"))
    hub.link_lost(gone)
    clock.advance(0.9)
    assert not silent.closed
    clock.advance(0.1)
    assert silent.closed and silent.close_code == CloseCode.SILENT
    assert not talking.closed and not gone.closed
    assert clock.getDelayedCalls() == []


def test_stopping_the_hub_forgets_the_silent_sockets(tmp_path: Path) -> None:
    clock, hub = make_hub(tmp_path)
    hub.link_opened(FakeLink())
    hub.stop()
    assert clock.getDelayedCalls() == []
