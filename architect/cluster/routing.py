"""ClusterRouting: one router's part in a set of routers sharing a run through Redis.

The hub tells it (through architect/router/cluster_port.py) when a socket of this router
starts or stops speaking for an agent, hands it the backend's live updates for agents
whose socket is not here, its registration answers, and the agents it does not know. It
tells the others each status this router learns, so that every router knows every agent
(its status, its browser session) and any of them can take its page's socket, its
requests and its heartbeats; it delivers here what the others send for the sockets this
router holds; and it beats, so that the sockets of a router that died are taken over.

Redis going away must not stop the router: what it holds locally it keeps serving; each
failed Redis command is logged (rate-limited) and counted (architect_redis_errors).
"""

from __future__ import annotations

from typing import Any, cast

from prometheus_client import Counter
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.cluster.shared_state import SharedState
from architect.connection_events import ConnectionEventKind as Kind
from architect.lifecycle import FINAL
from architect.log_rate import RateLimitedLog
from architect.protocol import (
    CLIENT_BOUND_LIVE_UPDATE,
    MAX_ID_LENGTH,
    UPDATE_STATUS,
    CloseCode,
    Packet,
    ProtocolError,
)
from architect.router.hub import Link, RouterHub
from architect.router.sessions import is_session
from architect.router.state import AgentRecord

log = Logger()

# Seconds an agent Redis did not know is not asked for again (a page retrying, or a
# stranger trying ids, costs one Redis read per id this often).
MISSING_FOR = 2.0
# Each router says it is alive every BEAT_EVERY seconds, for ALIVE_FOR seconds: one that
# stopped (killed, its machine gone) is found by the others within ALIVE_FOR + BEAT_EVERY,
# and one of them takes its sockets over, so that its pages that never come back are
# called disconnected after [router] disconnect_grace, as with one router.
BEAT_EVERY = 2.0
ALIVE_FOR = 10.0
# Seconds a registration answer waits for Redis before it goes to the worker anyway.
ANNOUNCE_TIMEOUT = 2.0


class RecentMisses:
    """Ids looked up in vain lately, each forgotten `seconds` after (at most `limit`)."""

    def __init__(self, clock: IReactorTime, seconds: float, limit: int = 10_000) -> None:
        self.clock = clock
        self.seconds = seconds
        self.limit = limit
        self._until: dict[str, float] = {}

    def add(self, key: str) -> None:
        if len(self._until) >= self.limit:
            self._until.pop(next(iter(self._until)))
        self._until[key] = self.clock.seconds() + self.seconds

    def seen(self, key: str) -> bool:
        until = self._until.get(key)
        if until is not None and until <= self.clock.seconds():
            del self._until[key]
            return False
        return until is not None


class ClusterRouting:
    def __init__(
        self,
        shared: SharedState,
        hub: RouterHub,
        clock: IReactorTime,
        alive_for: float = ALIVE_FOR,
    ) -> None:
        self.shared = shared
        self.alive_for = alive_for
        self._beats = LoopingCall(self._beat)
        self._beats.clock = clock
        self._beaten = False  # said alive once at least
        self.hub = hub
        self.clock = clock
        self.connected = False
        self.floods = RateLimitedLog(log, clock)
        self.errors = Counter(
            "architect_redis_errors",
            "Redis commands of this router that failed (several routers: [cluster] redis)",
            registry=hub.metrics.registry,
        )
        self._applying = False  # a status from another router: not told back to them
        self._looking: set[Any] = set()  # sockets whose agent is being looked up
        self._missing = RecentMisses(clock, MISSING_FOR)  # agents Redis did not know
        self._chained = hub.agents.on_status_change
        hub.agents.on_status_change = self._status_changed

    # --- life ---

    def start(self) -> Deferred[None]:
        """Connect (retrying while Redis is away); the router serves meanwhile."""
        self.hub.cluster = self

        def up(_: object) -> None:
            self.connected = True
            log.info("router {id} shares its agents through Redis", id=self.shared.router_id)
            if not self._beats.running:
                self._beats.start(BEAT_EVERY, now=True)

        started = maybeDeferred(self.shared.start, self._from_router, self._news, self._taken)
        return started.addCallbacks(up, self._failed)

    def stop(self, say_gone: bool = True) -> Deferred[None]:
        """Stop beating, say so (`say_gone`: the pages its drain sent away, and that did not
        come back through another router, are then waited for by another at its next beat),
        and disconnect."""
        if self._beats.running:
            self._beats.stop()
        gone = self._do(self.shared.say_gone) if say_gone and self.connected else succeed(None)
        self.connected = False
        if self.hub.cluster is self:
            self.hub.cluster = None
        return gone.addCallback(lambda _: maybeDeferred(self.shared.stop)).addErrback(
            lambda _: None
        )

    def _failed(self, failure: Failure) -> None:
        self.errors.inc()
        self.floods.warn(
            "redis",
            "Redis ([cluster] redis) failed: {why}; this router serves its own agents only",
            why=failure.getErrorMessage(),
        )

    def _do(self, command: Any, *args: Any) -> Deferred[Any]:
        """A Redis command whose failure is logged and counted, never raised."""
        if not self.connected or not self.shared.is_up:
            self._failed(Failure(ConnectionError("not connected")))
            return succeed(None)
        return maybeDeferred(command, *args).addErrback(self._failed)

    # --- the routers' beats ---

    def _beat(self) -> None:
        self._do(self.shared.beat, self.alive_for).addCallback(self._beaten_now)

    def _beaten_now(self, still: bool | None) -> Deferred[None] | None:
        if still is None:
            return None  # Redis failed (counted)
        if not still and self._beaten:
            # Taken for gone (Redis or this router stalled): its pages are held here again.
            log.warn(
                "router {id} was taken for gone: it holds its sockets again",
                id=self.shared.router_id,
            )
            for agent_id in set(self.hub.link_agents.values()):
                self._do(self.shared.claim_socket, agent_id)
        self._beaten = True
        return self._do(self.shared.gone_routers).addCallback(self._take_over)

    def _take_over(self, gone: list[str] | None) -> None:
        for router in gone or ():
            self._do(self.shared.take_over_from, router).addCallback(self._expect_back, router)

    def _expect_back(self, agents: list[str] | None, router: str) -> None:
        """The sockets of a router that stopped beating are this router's now: each of its
        pages has disconnect_grace seconds to come back (to any router), as if its socket
        had just closed here."""
        if not agents:
            return
        grace = self.hub.config.disconnect_grace
        log.warn(
            "router {gone} stopped beating: its {n} pages have {grace} s to come back",
            gone=router,
            n=len(agents),
            grace=grace,
        )
        for agent_id in agents:
            record = self.hub.agents.get(agent_id)
            if record is not None and record.link is None:
                self.hub.agents.expect(agent_id, record.status, grace)
                record.served_here = True  # its `disconnect`, if so, is told from here

    # --- from the hub (ClusterPort) ---

    def socket_attached(self, agent_id: str, link: Any) -> None:
        def replay(previous: str | None) -> Deferred[None] | None:
            # From another router (or none): the live updates its page may have missed.
            if previous == self.shared.router_id:
                return None
            return self._do(self.shared.replay, agent_id).addCallback(deliver)

        def deliver(packets: list[dict[str, Any]] | None) -> None:
            record = self.hub.agents.get(agent_id)
            if record is None or record.link is None or record.link is not link:
                return
            for raw in packets or ():
                packet = self._packet(agent_id, raw)
                if packet is not None:
                    record.link.send_packet(packet)

        self._do(self.shared.claim_socket, agent_id).addCallback(replay)

    def socket_detached(self, agent_id: str) -> None:
        """Still held in Redis while the grace runs: a page that comes back through another
        router then tells this one (`_taken`), which would else call the agent gone. Let
        go of once the agent's status is final (`_status_changed`)."""

    def live_update(self, packet: Packet, here: bool) -> bool:
        self._do(self.shared.send_to_agent, packet.subject_id, packet.to_dict())
        return here

    def look_up(self, link: Any, packet: Packet, session: str | None) -> bool:
        agent_id = packet.subject_id
        if not self.shared.is_up or self._missing.seen(agent_id) or link in self._looking:
            return False
        self._looking.add(link)

        def again(_: bool) -> None:
            self._looking.discard(link)
            if link in self.hub.unnamed_links:  # still open, still waiting to be named
                self.hub.link_packet(link, packet, session=session)

        self.learn(agent_id).addCallback(again)
        return True

    def learn(self, agent_id: str | None) -> Deferred[bool]:
        agents = self.hub.agents
        if not isinstance(agent_id, str) or len(agent_id) > MAX_ID_LENGTH:
            return succeed(False)
        if agents.get(agent_id) is not None:
            return succeed(True)
        if not self.shared.is_up or self._missing.seen(agent_id):
            return succeed(False)

        def found(record: dict[str, Any] | None) -> bool:
            if isinstance(record, dict) and agents.get(agent_id) is None:
                self._news(agent_id, record)
            if agents.get(agent_id) is None:
                self._missing.add(agent_id)
                return False
            return True

        return self._do(self.shared.record, agent_id).addCallback(found)

    def registered(self, answer: dict[str, Any]) -> Deferred[dict[str, Any]]:
        data = answer.get("data")
        agent_id = data.get("agent_id") if isinstance(data, dict) else None
        record = self.hub.agents.get(agent_id) if isinstance(agent_id, str) else None
        if record is None:
            return succeed(answer)
        told = self._tell(record)
        told.addTimeout(ANNOUNCE_TIMEOUT, self.clock, onTimeoutCancel=lambda *_: None)
        return told.addBoth(lambda _: answer)

    # --- to the other routers ---

    def _status_changed(self, record: AgentRecord) -> None:
        if self._chained is not None:
            self._chained(record)
        if not self._applying:
            self._tell(record)
        if record.status in FINAL and record.link is None:
            self._do(self.shared.release_socket, record.agent_id)

    def _tell(self, record: AgentRecord) -> Deferred[Any]:
        news: dict[str, Any] = {"status": record.status}
        if record.session is not None:
            news["session"] = record.session
        return self._do(self.shared.tell, record.agent_id, news)

    # --- from the other routers ---

    def _news(self, agent_id: str, news: dict[str, Any]) -> None:
        """Another router learned the agent's status (or registered it)."""
        status, session = news.get("status"), news.get("session")
        if not isinstance(status, str) or len(agent_id) > MAX_ID_LENGTH:
            return
        agents = self.hub.agents
        record = agents.ensure(agent_id)
        if record.session is None and isinstance(session, str) and is_session(session):
            record.session = session
        if record.status == status:
            return
        self._applying = True
        try:
            agents.set_status(agent_id, status)
        finally:
            self._applying = False
        if record.link is not None:
            packet = Packet(UPDATE_STATUS, agent_id, {"status": status})
            packet.router_outgoing_timestamp = self.clock.seconds()
            agents.deliver(agent_id, packet)

    def _from_router(self, agent_id: str, raw: dict[str, Any]) -> None:
        """A client-bound packet for an agent whose socket this router holds."""
        packet = self._packet(agent_id, raw)
        if packet is not None and self.hub.agents.get(agent_id) is not None:
            self.hub.agents.deliver(agent_id, packet)

    def _taken(self, agent_id: str) -> None:
        """The agent's page is on another router's socket now: this router lets go of it
        (its old socket, its grace and heartbeat timers: it would call the agent gone)."""
        record = self.hub.agents.get(agent_id)
        if record is None:
            return
        for timer in (record.grace_timer, record.heartbeat_timer):
            if timer is not None and timer.active():
                timer.cancel()
        record.grace_timer = record.heartbeat_timer = None
        record.last_heartbeat = None
        record.outbox = record.unconfirmed = None  # the new router replays them from Redis
        record.served_here = record.registered_here  # the new router answers for it
        link = cast("Link | None", record.link)  # the table holds the links the hub gave it
        record.link = None
        if link is not None:
            self.hub.link_agents.pop(link, None)  # its close is noted here, not as a loss
            self.hub.note(agent_id, Kind.SOCKET_CLOSE, code=CloseCode.MOVED)
            link.close(CloseCode.MOVED)

    @staticmethod
    def _packet(agent_id: str, raw: dict[str, Any]) -> Packet | None:
        try:
            packet = Packet.from_dict(raw)
        except ProtocolError:
            return None
        if packet.subject_id != agent_id or packet.packet_type != CLIENT_BOUND_LIVE_UPDATE:
            return None
        return packet
