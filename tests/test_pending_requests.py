"""PendingRequests on a task.Clock: one timer for all, each request timed exactly."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from architect.protocol import REGISTER_AGENT, Packet
from architect.router.errors import BackendTimeout
from architect.router.requests import PendingRequests


def outcome(d: Deferred[dict[str, Any]]) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def packet(request_id: str) -> Packet:
    return Packet(REGISTER_AGENT, "mephisto", {"request_id": request_id})


def test_each_request_times_out_at_its_own_deadline_with_one_timer() -> None:
    clock = Clock()
    requests = PendingRequests(clock, 30.0)
    got = {}
    for n in range(5):
        got[n] = outcome(requests.add(f"r{n}", packet(f"r{n}")))
        clock.advance(1.0)  # r0 at 0 s, r1 at 1 s, ...
    assert len(clock.getDelayedCalls()) == 1
    requests.answer("r1", {"ok": 1})
    clock.advance(24.0)  # 29 s
    assert got[0] == [] and got[1] == [{"ok": 1}]
    clock.advance(1.0)  # 30 s: r0's deadline, not r2's
    assert isinstance(got[0][0], Failure) and got[0][0].check(BackendTimeout)
    assert got[2] == []
    clock.advance(1.0)  # 31 s: r1 was answered; r2 was made at 2 s
    assert got[2] == []
    clock.advance(1.0)
    assert isinstance(got[2][0], Failure)
    assert len(requests) == 2
    assert [p.data["request_id"] for p in requests.unanswered()] == ["r3", "r4"]
    clock.advance(2.0)
    assert len(requests) == 0 and clock.getDelayedCalls() == []


def test_answers_in_order_keep_the_queue_short_and_leave_no_timer() -> None:
    clock = Clock()
    requests = PendingRequests(clock, 30.0)
    for n in range(10_000):
        requests.add(f"r{n}", packet(f"r{n}"))
        if n >= 3:
            requests.answer(f"r{n - 3}", {})
        assert len(requests._by_deadline) <= 4
    for n in range(9_997, 10_000):
        requests.answer(f"r{n}", {})
    assert len(requests._by_deadline) == 0
    assert clock.getDelayedCalls() == []


def test_a_callback_of_a_timed_out_request_may_make_another() -> None:
    clock = Clock()
    requests = PendingRequests(clock, 5.0)
    again: list[Any] = []
    first = requests.add("first", packet("first"))
    first.addErrback(lambda _: again.append(outcome(requests.add("again", packet("again")))))
    clock.advance(5.0)
    assert len(again) == 1 and len(clock.getDelayedCalls()) == 1
    clock.advance(4.9)
    assert again[0] == []
    clock.advance(0.1)
    assert isinstance(again[0][0], Failure)
    assert clock.getDelayedCalls() == []


def test_cancelled_and_failed_requests_leave_nothing_and_fire_once() -> None:
    clock = Clock()
    requests = PendingRequests(clock, 5.0)
    kept = outcome(requests.add("kept", packet("kept")))
    cancelled = requests.add("gone", packet("gone"))
    cancelled.addErrback(lambda _: None)
    cancelled.cancel()
    assert len(requests) == 1
    requests.fail_all(BackendTimeout("the backend went away"))
    assert isinstance(kept[0], Failure) and len(kept) == 1
    assert clock.getDelayedCalls() == [] and len(requests) == 0
    requests.answer("kept", {})  # too late: nothing fires again
    clock.advance(10.0)
    assert len(kept) == 1
