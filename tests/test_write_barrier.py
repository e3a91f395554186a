"""What the backend sends out waits for the database writes issued before it."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from architect.backend.routes import AgentRoutes
from architect.backend.write_barrier import WriteBarrier
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, UPDATE_STATUS, Packet
from tests.backend_fakes import FakeChannel


def test_durable_moves_only_over_writes_all_done() -> None:
    barrier = WriteBarrier()
    writes: list[Deferred[None]] = [Deferred() for _ in range(3)]
    for write in writes:
        barrier.track(write)
    assert barrier.mark() == 3 and barrier.durable == 0
    writes[1].callback(None)
    assert barrier.durable == 0  # the first is still open
    writes[0].callback(None)
    assert barrier.durable == 2
    writes[2].errback(RuntimeError("disk I/O error"))  # failed (and logged): done
    writes[2].addErrback(lambda _: None)
    assert barrier.durable == 3


def test_a_waiter_fires_once_its_mark_is_durable() -> None:
    barrier = WriteBarrier()
    first, second = Deferred[None](), Deferred[None]()
    barrier.track(first)
    early = barrier.mark()
    barrier.track(second)
    fired: list[str] = []
    barrier.when_durable(barrier.mark()).addCallback(lambda _: fired.append("late"))
    barrier.when_durable(early).addCallback(lambda _: fired.append("early"))
    first.callback(None)
    assert fired == ["early"]
    second.callback(None)
    assert fired == ["early", "late"]
    assert barrier.when_durable(barrier.mark()).called  # nothing open: at once


def test_a_packet_waits_for_the_writes_issued_before_it_and_keeps_its_order() -> None:
    barrier = WriteBarrier()
    routes = AgentRoutes(Clock(), barrier)
    one, two = FakeChannel("one"), FakeChannel("two")
    write = Deferred[None]()
    barrier.track(write)  # the write of the live update about to go out
    routes.send(one, Packet(CLIENT_BOUND_LIVE_UPDATE, "a-1", {"n": 1}))
    routes.send(two, Packet(UPDATE_STATUS, "a-2", {"status": "in task"}))
    later = Deferred[None]()
    barrier.track(later)  # issued after both: holds neither
    assert one.sent == [] and two.sent == []
    write.callback(None)
    assert [p.data for p in one.sent] == [{"n": 1}]
    assert [p.data for p in two.sent] == [{"status": "in task"}]
    routes.send(one, Packet(CLIENT_BOUND_LIVE_UPDATE, "a-1", {"n": 2}))
    assert len(one.sent) == 1  # `later` is still open
    later.callback(None)
    assert [p.data for p in one.sent] == [{"n": 1}, {"n": 2}]


def test_with_nothing_open_a_packet_goes_at_once() -> None:
    barrier = WriteBarrier()
    barrier.track(succeed(None))
    routes = AgentRoutes(Clock(), barrier)
    channel = FakeChannel("one")
    routes.send(channel, Packet(UPDATE_STATUS, "a-1", {"status": "in task"}))
    assert len(channel.sent) == 1
