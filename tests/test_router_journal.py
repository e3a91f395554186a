"""A separate router's journaled submissions, with fake links and a fake clock: what the
worker is told when, what a backend that confirms (ours) and one that does not
(Mephisto's) get, and what a restarted router delivers again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from architect.config import RouterConfig
from architect.protocol import (
    ALIVE,
    CONFIRM,
    EXPECT_SOCKET_WITHIN,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REQUEST_STATUSES,
    SUBMISSION_HANDLED,
    SUBMIT_METADATA,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    Outcome,
    Packet,
    Status,
)
from architect.router.errors import NoBackend, Refused, Unconfirmed
from architect.router.hub import RouterHub
from architect.router.journal import Journal
from tests.fakes import FakeLink
from tests.test_hub import connect_agent, results


def journaled_hub(tmp_path: Path, **overrides: Any) -> tuple[Clock, RouterHub]:
    clock = Clock()
    config = RouterConfig(upload_dir=tmp_path / "uploads", **{"trust_loopback": True, **overrides})
    journal = Journal(tmp_path / "journal", config.max_journal_bytes)
    return clock, RouterHub(clock, config, journal=journal)


def pending(hub: RouterHub) -> dict[str, Any]:
    """The hub's journal's pending entries, by id."""
    assert hub.journal is not None
    return dict(hub.journal.pending)


def connect(hub: RouterHub, confirms: bool) -> FakeLink:
    backend = FakeLink("backend")
    data = {"extensions": [CONFIRM]} if confirms else {}
    hub.link_packet(backend, Packet(ALIVE, MEPHISTO, data), from_loopback=True)
    assert hub.backend is backend
    return backend


def submit(hub: RouterHub, agent_id: str = "agent-1", answer: int = 1) -> list[Any]:
    return results(hub.submit(SUBMIT_UNIT, agent_id, {"answer": answer}, 5.0, None))


def confirm(hub: RouterHub, backend: FakeLink, packet: Packet, outcome: str, **more: str) -> None:
    data = {"confirm_id": packet.confirm_id, "outcome": outcome, **more}
    hub.link_packet(backend, Packet(SUBMISSION_HANDLED, packet.subject_id, data))


def test_with_no_backend_the_worker_is_answered_once_it_is_on_disk(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    assert submit(hub) == [None]
    assert len(pending(hub)) == 1


def test_a_confirming_backend_gets_the_id_and_the_worker_waits_for_its_word(
    tmp_path: Path,
) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    [sent] = backend.of_type(SUBMIT_UNIT)
    assert sent.confirm_id is not None and "confirm_id" in sent.to_dict()
    assert answered == []  # on disk, but not yet stored
    confirm(hub, backend, sent, Outcome.STORED)
    assert answered == [None]
    assert pending(hub) == {}


def test_a_refusal_reaches_the_worker(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    [sent] = backend.of_type(SUBMIT_UNIT)
    confirm(hub, backend, sent, Outcome.REFUSED, reason="this task expired")
    [failure] = answered
    assert failure.check(Refused) and "expired" in str(failure.value)
    assert pending(hub) == {}


def test_a_backend_that_could_not_store_gets_it_again_at_its_next_status_request(
    tmp_path: Path,
) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    [sent] = backend.of_type(SUBMIT_UNIT)
    confirm(hub, backend, sent, Outcome.FAILED)
    assert answered == [None]  # the journal holds it: the worker need not submit again
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))
    assert [p.confirm_id for p in backend.of_type(SUBMIT_UNIT)] == [sent.confirm_id] * 2
    confirm(hub, backend, sent, Outcome.STORED)
    assert pending(hub) == {}


def test_a_backend_silent_past_request_timeout_answers_the_worker_from_the_journal(
    tmp_path: Path,
) -> None:
    clock, hub = journaled_hub(tmp_path, request_timeout=30.0)
    hub.agents.ensure("agent-1")
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    clock.advance(29)
    assert answered == []
    clock.advance(2)
    assert answered == [None]
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))  # sent again: stale
    assert len(backend.of_type(SUBMIT_UNIT)) == 2


def test_what_a_lost_backend_never_confirmed_goes_first_to_the_next_one(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    hub.agents.ensure("agent-2")
    old = connect(hub, confirms=True)
    answered = submit(hub, "agent-1")
    hub.link_lost(old)
    assert answered == [None]  # on disk: acknowledged
    page = connect_agent(hub, "agent-2")
    hub.link_packet(page, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "agent-2", {"update_id": "u"}))
    later = submit(hub, "agent-2", 2)
    assert later == [None]
    new = connect(hub, confirms=True)
    kinds = [(p.packet_type, p.subject_id) for p in new.sent if p.packet_type != ALIVE]
    assert kinds == [
        (SUBMIT_UNIT, "agent-1"),
        (MEPHISTO_BOUND_LIVE_UPDATE, "agent-2"),
        (SUBMIT_UNIT, "agent-2"),
    ]


def test_a_backend_that_does_not_confirm_gets_no_id_and_the_entry_is_done_once_sent(
    tmp_path: Path,
) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    backend = connect(hub, confirms=False)  # Mephisto's backend says alive with no data
    assert submit(hub) == [None]
    [sent] = backend.of_type(SUBMIT_UNIT)
    assert sent.confirm_id is None and "confirm_id" not in sent.to_dict()
    assert pending(hub) == {}


def test_a_restarted_router_delivers_what_its_backend_never_had(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    hub.agents.ensure("agent-2")
    backend = connect(hub, confirms=True)
    submit(hub, "agent-1")
    [first] = backend.of_type(SUBMIT_UNIT)
    confirm(hub, backend, first, Outcome.STORED)
    submit(hub, "agent-2", 2)  # sent, never confirmed: then the router is killed
    assert hub.journal is not None
    hub.journal.close()

    _, restarted = journaled_hub(tmp_path)
    backend = connect(restarted, confirms=True)
    [again] = backend.of_type(SUBMIT_UNIT)
    assert (again.subject_id, again.data) == ("agent-2", {"answer": 2})
    confirm(restarted, backend, again, Outcome.STORED)
    assert pending(restarted) == {}


def test_metadata_is_journaled_too(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    answered = results(hub.submit(SUBMIT_METADATA, "agent-1", {"feedback": "ok"}, None, None))
    assert answered == [None]
    [entry] = pending(hub).values()
    assert entry.packet.packet_type == SUBMIT_METADATA


def test_a_full_journal_refuses_with_503(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path, max_journal_bytes=50)
    hub.agents.ensure("agent-1")
    hub.submit(SUBMIT_UNIT, "agent-1", {"answer": "x" * 40}, None, None)
    try:
        hub.submit(SUBMIT_UNIT, "agent-1", {"answer": "y" * 40}, None, None)
    except NoBackend as e:
        assert "max_journal_bytes" in str(e)
    else:
        raise AssertionError("a full journal took one more")


def test_odd_or_unasked_confirmations_change_nothing(tmp_path: Path) -> None:
    _, hub = journaled_hub(tmp_path)
    hub.agents.ensure("agent-1")
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    [sent] = backend.of_type(SUBMIT_UNIT)
    for data in (
        {"confirm_id": sent.confirm_id, "outcome": "maybe"},
        {"confirm_id": 7, "outcome": Outcome.STORED},
        {"confirm_id": "not-ours-1", "outcome": Outcome.STORED},
        {"outcome": Outcome.STORED},
    ):
        hub.link_packet(backend, Packet(SUBMISSION_HANDLED, "agent-1", data))
    assert answered == [] and len(pending(hub)) == 1
    # A page cannot confirm anything: its packets are an agent's.
    page = connect_agent(hub, "agent-1")
    data = {"confirm_id": sent.confirm_id, "outcome": Outcome.STORED}
    hub.link_packet(page, Packet(SUBMISSION_HANDLED, "agent-1", data))
    assert answered == [] and len(pending(hub)) == 1


def test_a_restarted_router_holds_a_pages_first_packets_until_its_backend_names_the_agent(
    tmp_path: Path,
) -> None:
    _, hub = journaled_hub(tmp_path)
    assert not hub.agents_told  # a router that (re)started
    page = FakeLink("page")
    hub.link_opened(page)
    hub.link_packet(page, Packet(ALIVE, "agent-1"))
    hub.link_packet(page, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "agent-1", {"update_id": "u1"}))
    for n in range(20):  # a bounded number of them
        hub.link_packet(page, Packet(MEPHISTO_BOUND_LIVE_UPDATE, "agent-1", {"update_id": n}))
    backend = connect(hub, confirms=True)
    hub.link_packet(backend, Packet(UPDATE_STATUS, "agent-1", {"status": Status.IN_TASK}))
    assert backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE) == []
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))  # it has told its agents
    assert hub.agents_told and hub.link_agents.get(page) == "agent-1"
    ids = [p.data["update_id"] for p in backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)]
    assert ids == ["u1", *range(14)]  # 16 packets held: the alive and 15 updates
    statuses = [p.data for p in page.of_type(UPDATE_STATUS)]
    assert statuses and all(d == {"status": Status.IN_TASK} for d in statuses), statuses


def test_a_seat_held_for_a_page_after_a_restart_ends_without_it(tmp_path: Path) -> None:
    clock, hub = journaled_hub(tmp_path)
    backend = connect(hub, confirms=True)
    data = {"status": Status.IN_TASK, EXPECT_SOCKET_WITHIN: 5}
    hub.link_packet(backend, Packet(UPDATE_STATUS, "agent-1", data))
    hub.link_packet(backend, Packet(UPDATE_STATUS, "agent-2", dict(data)))
    page = connect_agent(hub, "agent-1")
    statuses = [p.data for p in page.of_type(UPDATE_STATUS)]
    assert statuses and all(d == {"status": Status.IN_TASK} for d in statuses), statuses
    clock.advance(6)
    assert hub.agents.statuses() == {"agent-1": Status.IN_TASK, "agent-2": Status.DISCONNECT}


def test_an_odd_seat_hint_holds_no_seat_and_never_reaches_the_page(tmp_path: Path) -> None:
    clock, hub = journaled_hub(tmp_path)
    backend = connect(hub, confirms=True)
    odd = [-1, 0, 3601, 1e308, "5", True, None, [5]]
    for n, seat in enumerate(odd):
        data = {"status": Status.IN_TASK, EXPECT_SOCKET_WITHIN: seat}
        hub.link_packet(backend, Packet(UPDATE_STATUS, f"agent-{n}", data))
    page = connect_agent(hub, "agent-0")
    assert all(EXPECT_SOCKET_WITHIN not in p.data for p in page.of_type(UPDATE_STATUS))
    clock.advance(3700)
    assert set(hub.agents.statuses().values()) == {Status.IN_TASK}  # none made disconnect


class NoCluster:
    """A cluster port that does nothing: a hub that is one of several routers."""

    def socket_attached(self, agent_id: str, link: Any) -> None: ...

    def socket_detached(self, agent_id: str) -> None: ...

    def live_update(self, packet: Packet, here: bool) -> bool:
        return True

    def look_up(self, link: Any, packet: Packet, session: str | None) -> bool:
        return False

    def learn(self, agent_id: str | None) -> Deferred[bool]:
        return succeed(False)

    def registered(self, answer: dict[str, Any]) -> Deferred[dict[str, Any]]:
        return succeed(answer)


def clustered_hub(tmp_path: Path, **overrides: Any) -> tuple[Clock, RouterHub]:
    clock, hub = journaled_hub(tmp_path, **overrides)
    hub.cluster = NoCluster()
    hub.agents.ensure("agent-1")
    return clock, hub


def refusal(answered: list[Any]) -> type[BaseException]:
    [failure] = answered
    assert isinstance(failure, Failure) and failure.value is not None, answered
    return type(failure.value)


def test_one_of_several_routers_with_no_backend_journals_nothing_and_says_submit_again(
    tmp_path: Path,
) -> None:
    # Its journal is on its own disk: stranded if it dies for good, so nothing is
    # acknowledged from it.
    _, hub = clustered_hub(tmp_path)
    with pytest.raises(NoBackend):
        submit(hub)
    assert pending(hub) == {}


def test_one_of_several_routers_acknowledges_only_the_backends_word_that_it_stored(
    tmp_path: Path,
) -> None:
    clock, hub = clustered_hub(tmp_path, request_timeout=30.0)
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    clock.advance(31)  # no word: the worker submits again (maybe through another router)
    assert refusal(answered) is Unconfirmed
    assert len(pending(hub)) == 1  # and the journal still sends it: the backend stores once
    hub.link_packet(backend, Packet(REQUEST_STATUSES, MEPHISTO))
    assert len(backend.of_type(SUBMIT_UNIT)) == 2

    failed = submit(hub, answer=2)
    sent = backend.of_type(SUBMIT_UNIT)[-1]
    confirm(hub, backend, sent, Outcome.FAILED)
    assert refusal(failed) is Unconfirmed

    stored = submit(hub, answer=3)
    confirm(hub, backend, backend.of_type(SUBMIT_UNIT)[-1], Outcome.STORED)
    assert stored == [None]


def test_one_of_several_routers_answers_unconfirmed_when_its_backend_goes(
    tmp_path: Path,
) -> None:
    _, hub = clustered_hub(tmp_path)
    backend = connect(hub, confirms=True)
    answered = submit(hub)
    hub.link_lost(backend)
    assert refusal(answered) is Unconfirmed
