"""architect/cluster/shared_state.py against a real redis-server (tests/redis_server.py)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from architect.cluster.shared_state import SharedState
from architect.redis_url import RedisAddress, parse_redis_url
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]


class Inbox:
    def __init__(self) -> None:
        self.packets: list[tuple[str, dict[str, Any]]] = []
        self._waiting: list[defer.Deferred[None]] = []

    def receive(self, agent_id: str, packet: dict[str, Any]) -> None:
        self.packets.append((agent_id, packet))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    async def next(self) -> None:
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        d.addTimeout(5, reactor)  # type: ignore[arg-type]
        await d


async def _router(port: int, router_id: str, inbox: Inbox, replay: int = 3) -> SharedState:
    state = SharedState(RedisAddress("127.0.0.1", port, 0, None), router_id, replay)
    await state.start(inbox.receive)
    return state


@pytest_twisted.ensureDeferred
async def test_a_packet_reaches_the_router_holding_the_socket(redis_server: RedisServer) -> None:
    inbox_a, inbox_b = Inbox(), Inbox()
    a = await _router(redis_server.port, "a", inbox_a)
    b = await _router(redis_server.port, "b", inbox_b)
    try:
        await b.claim_socket("agent-1")
        assert await a.socket_holder("agent-1") == "b"
        arrived = inbox_b.next()
        assert await a.send_to_agent("agent-1", {"packet_type": "update", "n": 1}) == "b"
        await arrived
        assert inbox_b.packets == [("agent-1", {"packet_type": "update", "n": 1})]
        assert inbox_a.packets == []
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_release_only_by_the_holder_and_replay_is_bounded(redis_server: RedisServer) -> None:
    a = await _router(redis_server.port, "a", Inbox())
    b = await _router(redis_server.port, "b", Inbox())
    try:
        assert await a.claim_socket("agent-1") is None
        assert await b.claim_socket("agent-1") == "a"  # the page reconnected through b
        await a.release_socket("agent-1")  # a's late close must not undo b's claim
        assert await b.socket_holder("agent-1") == "b"
        await b.release_socket("agent-1")
        assert await a.socket_holder("agent-1") is None
        for n in range(5):
            assert await a.send_to_agent("agent-1", {"n": n}) is None
        assert await b.replay("agent-1") == [{"n": 2}, {"n": 3}, {"n": 4}]
        await a.store_record("agent-1", {"status": "in task", "worker_id": "w"})
        assert await b.record("agent-1") == {"status": "in task", "worker_id": "w"}
        assert await b.record("agent-2") is None
    finally:
        await a.stop()
        await b.stop()


@pytest_twisted.ensureDeferred
async def test_unknown_messages_on_the_channel_are_ignored(redis_server: RedisServer) -> None:
    inbox = Inbox()
    a = await _router(redis_server.port, "a", inbox)
    try:
        await a._commands.publish("architect:router:a", "not json")
        await a._commands.publish("architect:router:a", '{"agent_id": "x"}')
        arrived = inbox.next()
        await a._commands.publish("architect:router:a", '{"agent_id": "x", "packet": {}}')
        await arrived
        assert inbox.packets == [("x", {})]
        await task.deferLater(reactor, 0, lambda: None)  # type: ignore[arg-type]
    finally:
        await a.stop()


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_the_subscription_is_renewed_after_redis_restarts(redis_server: RedisServer) -> None:
    inbox = Inbox()
    a = await _router(redis_server.port, "a", inbox)
    try:
        await a.claim_socket("agent-1")
        redis_server.stop()
        redis_server.start()  # empty: nothing is persisted in the tests
        for _ in range(200):  # both connections come back by themselves (txredisapi retries)
            try:
                await a.claim_socket("agent-1")
                if await a._commands.execute_command("PUBSUB", "NUMSUB", "architect:router:a") == [
                    "architect:router:a",
                    1,
                ]:
                    break
            except Exception:
                pass
            await task.deferLater(reactor, 0.1, lambda: None)  # type: ignore[arg-type]
        b = await _router(redis_server.port, "b", Inbox())  # a router does not publish to itself
        try:
            arrived = inbox.next()
            assert await b.send_to_agent("agent-1", {"n": 1}) == "a"
            await arrived
        finally:
            await b.stop()
        assert inbox.packets == [("agent-1", {"n": 1})]
    finally:
        await a.stop()


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://h", "must start with redis://"),
        ("redis://", "names no host"),
        ("redis://h:99999", "port"),
        ("redis://h/99", "database"),
        ("redis://h/0?x=1", "no query"),
    ],
)
def test_bad_redis_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_redis_url(url)


def test_a_good_redis_url() -> None:
    assert parse_redis_url("redis://:pw@10.0.0.1:6380/2") == RedisAddress("10.0.0.1", 6380, 2, "pw")
    assert parse_redis_url("redis://h") == RedisAddress("h", 6379, 0, None)
