"""The per-agent state machine: liveness rules at their boundaries, outbox."""

from twisted.internet.task import Clock

from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, Packet, Status
from architect.router.state import AgentTable
from tests.fakes import FakeLink

GRACE = 10.0
SILENCE = 15.0


def make_table(max_outbox: int = 100) -> tuple[Clock, AgentTable]:
    clock = Clock()
    return clock, AgentTable(clock, GRACE, SILENCE, max_outbox)


def update(n: int) -> Packet:
    return Packet(CLIENT_BOUND_LIVE_UPDATE, "a1", {"n": n})


def test_closed_socket_is_disconnect_exactly_at_grace() -> None:
    clock, table = make_table()
    link = FakeLink()
    table.attach("a1", link)
    table.set_status("a1", Status.IN_TASK)
    table.detach("a1", link)
    clock.advance(GRACE - 0.001)
    assert table.statuses() == {"a1": Status.IN_TASK}
    clock.advance(0.001)
    assert table.statuses() == {"a1": Status.DISCONNECT}


def test_new_alive_within_grace_keeps_the_agent() -> None:
    clock, table = make_table()
    first, second = FakeLink("first"), FakeLink("second")
    table.attach("a1", first)
    table.set_status("a1", Status.WAITING)
    table.detach("a1", first)
    clock.advance(GRACE - 0.001)
    table.attach("a1", second)
    clock.advance(GRACE * 3)
    assert table.statuses() == {"a1": Status.WAITING}


def test_closing_an_old_link_after_a_new_one_attached_changes_nothing() -> None:
    clock, table = make_table()
    first, second = FakeLink("first"), FakeLink("second")
    table.attach("a1", first)
    table.set_status("a1", Status.IN_TASK)
    table.attach("a1", second)
    table.detach("a1", first)
    clock.advance(GRACE * 2)
    assert table.statuses() == {"a1": Status.IN_TASK}


def test_completed_agent_closing_its_socket_stays_completed() -> None:
    clock, table = make_table()
    link = FakeLink()
    table.attach("a1", link)
    table.set_status("a1", Status.COMPLETED)
    table.detach("a1", link)
    clock.advance(GRACE * 2)
    assert table.statuses() == {"a1": Status.COMPLETED}


def test_heartbeat_silence_is_disconnect_exactly_at_timeout() -> None:
    clock, table = make_table()
    table.attach("a1", FakeLink())
    table.set_status("a1", Status.IN_TASK)
    table.heartbeat("a1")
    clock.advance(SILENCE - 0.001)
    assert table.statuses() == {"a1": Status.IN_TASK}
    clock.advance(0.001)
    assert table.statuses() == {"a1": Status.DISCONNECT}


def test_each_heartbeat_restarts_the_silence_clock() -> None:
    clock, table = make_table()
    table.attach("a1", FakeLink())
    table.set_status("a1", Status.ONBOARDING)
    for _ in range(5):
        table.heartbeat("a1")
        clock.advance(SILENCE - 1)
    assert table.statuses() == {"a1": Status.ONBOARDING}
    clock.advance(1)
    assert table.statuses() == {"a1": Status.DISCONNECT}


def test_heartbeats_keep_one_timer_and_the_deadline_moves_with_each() -> None:
    """No timer made (and one cancelled) per heartbeat: the one armed rearms itself for
    what is left when it fires early; the silence still counts from the last heartbeat."""
    clock, table = make_table()
    table.attach("a1", FakeLink())
    table.set_status("a1", Status.IN_TASK)
    record = table.heartbeat("a1")
    assert record is not None and record.heartbeat_timer is not None
    timers = [record.heartbeat_timer]  # (kept: an id is not reused while they live)
    for _ in range(20):
        clock.advance(SILENCE / 4)
        table.heartbeat("a1")
        timers.append(record.heartbeat_timer)
    # one per SILENCE passed, not one per heartbeat
    assert len({id(timer) for timer in timers}) <= 20 / 4 + 2  # (the first, and at the end)
    clock.advance(SILENCE - 0.001)
    assert table.statuses() == {"a1": Status.IN_TASK}
    clock.advance(0.001)
    assert table.statuses() == {"a1": Status.DISCONNECT}
    assert record.heartbeat_timer is None


def test_agent_that_never_heartbeated_is_not_timed_out() -> None:
    clock, table = make_table()
    table.attach("a1", FakeLink())
    table.set_status("a1", Status.IN_TASK)
    clock.advance(SILENCE * 10)
    assert table.statuses() == {"a1": Status.IN_TASK}


def test_silence_only_counts_in_watched_statuses() -> None:
    clock, table = make_table()
    table.attach("a1", FakeLink())
    table.set_status("a1", Status.ACCEPTED)
    table.heartbeat("a1")
    clock.advance(SILENCE * 2)
    assert table.statuses() == {"a1": Status.ACCEPTED}
    # Becoming watched after a long silence is judged against the last heartbeat at once.
    table.set_status("a1", Status.IN_TASK)
    clock.advance(0)
    assert table.statuses() == {"a1": Status.DISCONNECT}


def test_becoming_watched_counts_the_silence_already_passed() -> None:
    clock, table = make_table()
    table.attach("a1", FakeLink())
    table.set_status("a1", Status.ACCEPTED)
    table.heartbeat("a1")
    clock.advance(SILENCE - 5)
    table.set_status("a1", Status.WAITING)
    clock.advance(4.5)
    assert table.statuses() == {"a1": Status.WAITING}
    clock.advance(0.5)
    assert table.statuses() == {"a1": Status.DISCONNECT}


def test_outbox_keeps_packets_until_the_next_alive_in_order() -> None:
    _, table = make_table()
    first = FakeLink("first")
    table.attach("a1", first)
    table.detach("a1", first)
    for n in range(3):
        table.deliver("a1", update(n))
    assert first.sent == []
    second = FakeLink("second")
    table.attach("a1", second)
    assert [p.data["n"] for p in second.sent] == [0, 1, 2]
    table.deliver("a1", update(3))
    assert [p.data["n"] for p in second.sent] == [0, 1, 2, 3]


def test_full_outbox_drops_the_oldest() -> None:
    _, table = make_table(max_outbox=3)
    for n in range(5):
        table.deliver("a1", update(n))
    link = FakeLink()
    table.attach("a1", link)
    assert [p.data["n"] for p in link.sent] == [2, 3, 4]


def test_status_change_callback_sees_router_made_disconnects() -> None:
    clock = Clock()
    seen: list[tuple[str, str]] = []
    table = AgentTable(
        clock, GRACE, SILENCE, 10, on_status_change=lambda r: seen.append((r.agent_id, r.status))
    )
    link = FakeLink()
    table.attach("a1", link)
    table.set_status("a1", Status.IN_TASK)
    table.detach("a1", link)
    clock.advance(GRACE)
    assert seen == [("a1", Status.IN_TASK), ("a1", Status.DISCONNECT)]


def test_live_updates_a_dead_socket_may_have_lost_go_to_the_next_one() -> None:
    clock = Clock()
    table = AgentTable(clock, GRACE, SILENCE, 100, replay_window=60)
    first = FakeLink("first")
    table.attach("a1", first)
    table.deliver("a1", update(1))
    clock.advance(30)
    table.deliver("a1", update(2))
    table.heartbeat("a1")  # a heartbeat proves nothing about what the browser read
    clock.advance(30.5)  # update 1 is now older than the window: surely read or long gone
    table.deliver("a1", update(3))
    table.detach("a1", first)
    table.deliver("a1", update(4))
    second = FakeLink("second")
    table.attach("a1", second)
    assert [p.data["n"] for p in second.sent] == [2, 3, 4]


def test_a_page_given_its_history_gets_no_replay() -> None:
    _, table = make_table()
    first = FakeLink("first")
    table.attach("a1", first)
    table.deliver("a1", update(1))
    table.detach("a1", first)
    table.deliver("a1", update(2))
    table.history_delivered("a1")  # a reload: past_live_updates came with the registration
    second = FakeLink("second")
    table.attach("a1", second)
    assert second.sent == []


def test_an_expected_agent_is_disconnect_unless_its_page_is_back_within_the_grace() -> None:
    clock, table = make_table()
    table.expect("back", Status.IN_TASK, 60.0)
    table.expect("gone", Status.IN_TASK, 60.0)
    table.expect("static", Status.IN_TASK, None)
    clock.advance(59.0)
    table.attach("back", FakeLink())
    clock.advance(0.999)
    assert table.statuses()["gone"] == Status.IN_TASK
    clock.advance(0.001)
    assert table.statuses() == {
        "back": Status.IN_TASK,
        "gone": Status.DISCONNECT,
        "static": Status.IN_TASK,
    }
    clock.advance(86_400.0)
    assert table.statuses()["static"] == Status.IN_TASK
