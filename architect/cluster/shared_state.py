"""What one router holds, mirrored in Redis for the others (keys in docs/scaling.md).

- `architect:sockets` hash: agent_id -> id of the router holding its WebSocket
- `architect:agent:<agent_id>` string: the agent's record (JSON), as the status cache
- `architect:replay:<agent_id>` list: the last client-bound packets, newest first, for a failover
- channel `architect:router:<router_id>`: client-bound packets for agents on that router, and
  word that another router took over an agent's socket
- channel `architect:agents`: each agent's status (and browser session) as any router learns it
- `architect:routers` set and `architect:alive:<router_id>` strings (expiring): which routers
  there are, and which of them still beat
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from architect.redis_url import RedisAddress

SOCKETS = "architect:sockets"
AGENTS = "architect:agents"
# Seconds an agent's record and replay list outlive their last write: a finished run's
# agents do not stay in Redis for ever.
KEPT_FOR = 24 * 3600

# Take the socket over; the router that held it is told (it drops its link and timers).
_CLAIM = (
    "local old = redis.call('hget', KEYS[1], ARGV[1]) "
    "redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) "
    "if old and old ~= ARGV[2] then redis.call('publish', 'architect:router:' .. old, ARGV[3]) end "
    "return old"
)

# Release the socket only if this router still holds it: another may have taken it over.
_RELEASE_IF_MINE = (
    "if redis.call('hget', KEYS[1], ARGV[1]) == ARGV[2] then "
    "return redis.call('hdel', KEYS[1], ARGV[1]) end return 0"
)

ROUTERS = "architect:routers"

# The sockets a router that stopped beating held become this router's, once (one router
# takes them: the first to set the reaping mark); returns those agents' ids. One pass over
# the whole hash, done only when a router is found gone.
_TAKE_OVER_FROM = (
    "if not redis.call('set', KEYS[2], ARGV[2], 'NX', 'EX', 60) then return {} end "
    "local all = redis.call('hgetall', KEYS[1]) local taken = {} "
    "for i = 1, #all, 2 do if all[i + 1] == ARGV[1] then "
    "redis.call('hset', KEYS[1], all[i], ARGV[2]) taken[#taken + 1] = all[i] end end "
    "redis.call('srem', KEYS[3], ARGV[1]) "
    "return taken"
)

# One round trip per client-bound packet: keep it for a replay, then publish it to its holder.
_KEEP_AND_PUBLISH = (
    "redis.call('lpush', KEYS[1], ARGV[1]) "
    "redis.call('ltrim', KEYS[1], 0, tonumber(ARGV[2]) - 1) "
    "redis.call('expire', KEYS[1], tonumber(ARGV[6])) "
    "local holder = redis.call('hget', KEYS[2], ARGV[3]) "
    "if holder and holder ~= ARGV[5] then "
    "redis.call('publish', 'architect:router:' .. holder, ARGV[4]) end "
    "return holder"
)


def router_channel(router_id: str) -> str:
    return f"architect:router:{router_id}"


class _Subscriber(txredisapi.SubscriberProtocol):  # type: ignore[misc]
    @defer.inlineCallbacks
    def connectionMade(self) -> Any:
        # Subscribed again on each reconnection: a lost subscription would drop packets silently.
        yield super().connectionMade()
        yield self.subscribe(self.factory.channels)

    def messageReceived(self, pattern: str, channel: str, message: str) -> None:
        try:
            envelope = json.loads(message)
            agent_id = envelope["agent_id"]
        except (ValueError, KeyError, TypeError):
            return  # not ours: only routers publish on these channels
        if not isinstance(agent_id, str) or not isinstance(envelope, dict):
            return
        if channel == AGENTS:
            if envelope.get("from") != self.factory.router_id:  # our own news is known here
                self.factory.on_news(agent_id, envelope)
        elif isinstance(envelope.get("packet"), dict):
            self.factory.on_packet(agent_id, envelope["packet"])
        elif isinstance(envelope.get("taken_by"), str):
            self.factory.on_taken(agent_id)


class SharedState:
    """One router's view of the cluster: commands on one connection, its channel on another."""

    def __init__(self, address: RedisAddress, router_id: str, replay_length: int) -> None:
        self.router_id = router_id
        self.replay_length = replay_length
        self._address = address
        self._commands: Any = None
        self._subscriber: Any = None

    @defer.inlineCallbacks
    def start(
        self,
        on_packet: Callable[[str, dict[str, Any]], None],
        on_news: Callable[[str, dict[str, Any]], None] = lambda *_: None,
        on_taken: Callable[[str], None] = lambda _: None,
    ) -> Any:
        """Connect, and call on_packet(agent_id, packet) for each packet sent to this router,
        on_news(agent_id, news) for what another router said of an agent (`tell`), and
        on_taken(agent_id) when another router took over a socket this one held."""
        a = self._address
        self._commands = yield txredisapi.Connection(
            a.host, a.port, dbid=a.db, password=a.password, reconnect=True
        )
        factory = txredisapi.SubscriberFactory()
        factory.protocol = _Subscriber
        factory.password = a.password
        factory.on_packet = on_packet
        factory.on_news = on_news
        factory.on_taken = on_taken
        factory.router_id = self.router_id
        factory.channels = [router_channel(self.router_id), AGENTS]
        factory.reconnect = True
        factory.startConnecting(TCP4ClientEndpoint(reactor, a.host, a.port))
        self._subscriber = yield factory.deferred
        # The first subscription is confirmed before start() returns: no packet sent after is lost.
        yield self._subscriber.subscribe(factory.channels)

    @property
    def is_up(self) -> bool:
        """Whether the command connection is open now: while it is not, a command would wait
        for Redis to come back (and pile up), so callers do without."""
        return self._commands is not None and self._commands._factory.size > 0

    @defer.inlineCallbacks
    def stop(self) -> Any:
        for connection in (self._subscriber, self._commands):
            if connection is not None:
                yield connection.disconnect()

    def claim_socket(self, agent_id: str) -> defer.Deferred[Any]:
        """Hold the agent's socket here; fires with the router that held it before, or None."""
        word = json.dumps({"agent_id": agent_id, "taken_by": self.router_id})
        return self._commands.eval(_CLAIM, [SOCKETS], [agent_id, self.router_id, word])

    def release_socket(self, agent_id: str) -> defer.Deferred[Any]:
        return self._commands.eval(_RELEASE_IF_MINE, [SOCKETS], [agent_id, self.router_id])

    @defer.inlineCallbacks
    def beat(self, alive_for: float) -> Any:
        """Say this router is alive for `alive_for` seconds more. Returns whether it still
        was (False: the others may have taken its sockets over meanwhile)."""
        yield self._commands.sadd(ROUTERS, self.router_id)
        key = f"architect:alive:{self.router_id}"
        was = yield self._commands.execute_command(
            "SET", key, "1", "PX", int(alive_for * 1000), "GET"
        )
        return was is not None

    def say_gone(self) -> defer.Deferred[Any]:
        """This router stops: the others need not wait for its beat to run out."""
        return self._commands.delete(f"architect:alive:{self.router_id}")

    @defer.inlineCallbacks
    def gone_routers(self) -> Any:
        """The other routers that stopped beating."""
        routers = yield self._commands.smembers(ROUTERS)
        others = sorted(r for r in routers if r != self.router_id)
        if not others:
            return []
        alive = yield self._commands.mget([f"architect:alive:{r}" for r in others])
        return [r for r, beat in zip(others, alive, strict=True) if beat is None]

    def take_over_from(self, gone: str) -> defer.Deferred[Any]:
        """Hold the sockets the gone router held (if no other router took them first):
        a page that comes back through another router is then told to this one."""
        keys = [SOCKETS, f"architect:reaping:{gone}", ROUTERS]
        return self._commands.eval(_TAKE_OVER_FROM, keys, [gone, self.router_id])

    def socket_holder(self, agent_id: str) -> defer.Deferred[Any]:
        """The id of the router holding the agent's socket, or None."""
        return self._commands.hget(SOCKETS, agent_id)

    def store_record(self, agent_id: str, record: dict[str, Any]) -> defer.Deferred[Any]:
        return self._commands.set(
            f"architect:agent:{agent_id}", json.dumps(record), expire=KEPT_FOR
        )

    @defer.inlineCallbacks
    def tell(self, agent_id: str, news: dict[str, Any]) -> Any:
        """Store the agent's record and tell every other router (on_news)."""
        yield self.store_record(agent_id, news)
        envelope = {**news, "agent_id": agent_id, "from": self.router_id}
        yield self._commands.publish(AGENTS, json.dumps(envelope))

    @defer.inlineCallbacks
    def record(self, agent_id: str) -> Any:
        raw = yield self._commands.get(f"architect:agent:{agent_id}")
        return None if raw is None else json.loads(raw)

    @defer.inlineCallbacks
    def send_to_agent(self, agent_id: str, packet: dict[str, Any]) -> Any:
        """Keep the packet for a replay and pass it to the router holding the socket.

        Returns that router's id, or None when no router holds it (the replay list keeps it).
        Nothing is published when this router holds it: its caller delivers it here.
        """
        keys = [f"architect:replay:{agent_id}", SOCKETS]
        envelope = json.dumps({"agent_id": agent_id, "packet": packet})
        args = [json.dumps(packet), self.replay_length, agent_id, envelope, self.router_id]
        args.append(KEPT_FOR)
        holder = yield self._commands.eval(_KEEP_AND_PUBLISH, keys, args)
        return holder

    @defer.inlineCallbacks
    def replay(self, agent_id: str) -> Any:
        """The kept client-bound packets, oldest first."""
        texts = yield self._commands.lrange(f"architect:replay:{agent_id}", 0, -1)
        return [json.loads(text) for text in reversed(texts)]
