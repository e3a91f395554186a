"""Per-agent router state: cached status, liveness, outbox.

A pure state machine driven by an injected clock (`IReactorTime`): no sockets
here, only `AgentLink`s, which anything with `send_packet` can be.

Liveness rules (docs/protocol.md):
- a link that goes away and is not replaced by a new one for the same agent
  within `disconnect_grace` seconds makes an active agent `disconnect`;
- an agent that has heartbeated before, whose status is watched (onboarding,
  waiting, in task) and that has not heartbeated for `heartbeat_timeout`
  seconds is `disconnect`;
- a heartbeat more than `heartbeat_gap` seconds after the agent's last one is a gap,
  told to `on_heartbeat_gap` with its length (for the agent's timeline).

Memory: a record exists only for an agent the backend vouched for (the hub calls
`ensure` for those alone), and one in a final status is forgotten
`status_retention` seconds later, so the table follows the agents working.

Delivery: packets for an agent whose link is away wait in its outbox. Live
updates written to a link are kept for `replay_window` seconds (`unconfirmed`):
a socket can die with them unread (a laptop going offline) and the browser only
notices after several unanswered heartbeats, so a new link gets them again
first. Nothing tells the router what a browser has read (its heartbeats may
have been held back and flushed late), hence a window of time. Browsers drop
repeated `update_id`s. A registration answer that
carries `past_live_updates` hands the page its history (the newest updates, as
many as the backend's bounds allow), so both queues are cleared then.

Bounds (docs/security.md): the outbox and the replay buffer each hold at most
`max_outbox_packets` packets and `max_outbox_bytes` bytes, the oldest dropped first; a
browser's live updates are limited per agent to `max_updates_per_second`. Each bound an
agent hits is logged once for that agent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from architect.config import RouterConfig
from architect.lifecycle import FINAL, HEARTBEAT_WATCHED, is_active
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, Packet, Status, data_size
from architect.router.queues import SizedQueue
from architect.router.rate import TokenBucket

log = Logger()


class AgentLink(Protocol):
    """Whatever carries packets to one agent's browser."""

    def send_packet(self, packet: Packet) -> None: ...


@attrs.define(eq=False)
class AgentRecord:
    agent_id: str
    status: str = Status.NONE
    link: AgentLink | None = None
    # Made when first needed, dropped when empty: most agents never need them, and the
    # garbage collector walks every container a router holds (10,000s of agents).
    outbox: SizedQueue[Packet] | None = None
    last_heartbeat: float | None = None
    unconfirmed: SizedQueue[tuple[float, Packet]] | None = None  # (written at, packet)
    grace_timer: IDelayedCall | None = None
    heartbeat_timer: IDelayedCall | None = None
    retention_timer: IDelayedCall | None = None  # set once the status is final
    # The browser session that registered it (router/sessions.py); None: not bound yet.
    session: str | None = None
    update_rate: TokenBucket | None = None  # its browser's live updates, from the first
    had_socket: bool = False  # a socket spoke for it before (another one is a reload)
    # One of several routers answers its backend's request_statuses only for the agents
    # it serves: registered here, its page's socket here, or taken over from a gone router.
    registered_here: bool = False
    served_here: bool = False
    logged: set[str] | None = None  # the bounds it hit, each logged once


def _cancel(timer: IDelayedCall | None) -> None:
    if timer is not None and timer.active():
        timer.cancel()


class AgentTable:
    """Every agent the router has heard of, kept across socket loss and backend loss."""

    def __init__(
        self,
        clock: IReactorTime,
        disconnect_grace: float,
        heartbeat_timeout: float,
        max_outbox_packets: int,
        on_status_change: Callable[[AgentRecord], None] | None = None,
        replay_window: float = RouterConfig().replay_window,
        bind_sessions: bool = RouterConfig().bind_agents_to_browser,
        status_retention: float = RouterConfig().status_retention,
        on_forget: Callable[[AgentRecord], None] | None = None,
        max_outbox_bytes: int = RouterConfig().max_outbox_bytes,
        max_updates_per_second: float = RouterConfig().max_updates_per_second,
        max_update_burst: int = RouterConfig().max_update_burst,
        heartbeat_gap: float = RouterConfig().heartbeat_gap,
        on_heartbeat_gap: Callable[[AgentRecord, float], None] | None = None,
    ) -> None:
        self.heartbeat_gap = heartbeat_gap
        self.on_heartbeat_gap = on_heartbeat_gap
        self.max_outbox_bytes = max_outbox_bytes  # and as many for the replay buffer
        self.max_updates_per_second = max_updates_per_second
        self.max_update_burst = max_update_burst
        self.bind_sessions = bind_sessions
        self.status_retention = status_retention
        self.on_forget = on_forget
        self.replay_window = replay_window
        self.clock = clock
        self.disconnect_grace = disconnect_grace
        self.heartbeat_timeout = heartbeat_timeout
        self.max_outbox_packets = max_outbox_packets
        self.on_status_change = on_status_change
        self.records: dict[str, AgentRecord] = {}

    def get(self, agent_id: str) -> AgentRecord | None:
        return self.records.get(agent_id)

    def ensure(self, agent_id: str) -> AgentRecord:
        record = self.records.get(agent_id)
        if record is None:
            record = self.records[agent_id] = AgentRecord(agent_id)
        return record

    def claim(self, record: AgentRecord, session: str | None) -> bool:
        """Whether this browser session may act for the agent; the first to come binds it.

        An agent is bound when its registration is answered; one the router learned of
        otherwise (carried on after a restart) goes to the first session that acts for it.
        """
        if not self.bind_sessions or record.session == session:
            return True
        if record.session is None:
            record.session = session
            return True
        return False

    def statuses(self, served_only: bool = False) -> dict[str, str]:
        """Every agent's status, or (one of several routers) those of the agents it serves."""
        records = self.records.items()
        if served_only:
            return {agent_id: r.status for agent_id, r in records if r.served_here}
        return {agent_id: record.status for agent_id, record in records}

    def stop(self) -> None:
        """Cancel every timer (the router is stopping)."""
        for record in self.records.values():
            _cancel(record.grace_timer)
            _cancel(record.heartbeat_timer)
            _cancel(record.retention_timer)
            record.grace_timer = record.heartbeat_timer = record.retention_timer = None

    # --- links ---

    def attach(self, agent_id: str, link: AgentLink) -> AgentRecord:
        """A link said `alive` for this agent: it becomes the agent's link, the outbox drains."""
        record = self.ensure(agent_id)
        _cancel(record.grace_timer)
        record.grace_timer = None
        record.served_here = True
        if record.link is link:
            return record
        record.link = link
        # What the last link may have lost goes first, then what waited for a link.
        self._forget_old(record)
        for _, packet in list(record.unconfirmed or ()):
            link.send_packet(packet)
        while record.outbox and record.link is link:
            self._send(record, link, record.outbox.popleft())
        if not record.outbox:
            record.outbox = None
        return record

    def _send(self, record: AgentRecord, link: AgentLink, packet: Packet) -> None:
        link.send_packet(packet)
        if packet.packet_type != CLIENT_BOUND_LIVE_UPDATE:
            return  # statuses: a new link is told the current one anyway
        self._forget_old(record)
        if record.unconfirmed is None:
            record.unconfirmed = SizedQueue()
        record.unconfirmed.append((self.clock.seconds(), packet), data_size(packet.data))
        self._trim(record, record.unconfirmed, "replay buffer")
        if not record.unconfirmed:
            record.unconfirmed = None

    def _forget_old(self, record: AgentRecord) -> None:
        if record.unconfirmed is None:
            return
        oldest = self.clock.seconds() - self.replay_window
        while record.unconfirmed and record.unconfirmed[0][0] < oldest:
            record.unconfirmed.popleft()
        if not record.unconfirmed:
            record.unconfirmed = None

    def history_delivered(self, agent_id: str) -> None:
        """The page got every live update so far another way (a registration answer)."""
        record = self.records.get(agent_id)
        if record is not None:
            record.outbox = record.unconfirmed = None

    def detach(self, agent_id: str, link: AgentLink) -> None:
        """A link went away; if it was the agent's current one, the grace period starts."""
        record = self.records.get(agent_id)
        if record is None or record.link is not link:
            return
        record.link = None
        _cancel(record.grace_timer)
        record.grace_timer = self.clock.callLater(
            self.disconnect_grace, self._grace_expired, record
        )

    def expect(self, agent_id: str, status: str, grace: float | None) -> AgentRecord:
        """An agent a restarted daemon carries on, known before its page is back (its REST
        calls are taken) with its status. With `grace`, it becomes `disconnect` unless a
        link says alive for it within `grace` seconds, as if it had just lost its socket."""
        record = self.ensure(agent_id)
        record.status = status
        if grace is not None and record.link is None:
            _cancel(record.grace_timer)
            record.grace_timer = self.clock.callLater(grace, self._grace_expired, record)
        return record

    def _grace_expired(self, record: AgentRecord) -> None:
        record.grace_timer = None
        if record.link is None and is_active(record.status):
            log.info("agent {agent_id} did not come back: disconnect", agent_id=record.agent_id)
            self.set_status(record.agent_id, Status.DISCONNECT)

    # --- heartbeats ---

    def heartbeat(self, agent_id: str) -> AgentRecord | None:
        record = self.records.get(agent_id)
        if record is None:
            return None  # forgotten while its socket spoke
        now, last = self.clock.seconds(), record.last_heartbeat
        if last is not None and now - last > self.heartbeat_gap and self.on_heartbeat_gap:
            self.on_heartbeat_gap(record, round(now - last, 3))
        record.last_heartbeat = now
        self._watch_heartbeat(record)
        return record

    def _watch_heartbeat(self, record: AgentRecord) -> None:
        """(Re)arm the silence timer for an agent that heartbeats and is working.

        A timer already armed is left as it is, though the deadline moved on: when it
        fires early it arms itself for what is left (`_heartbeat_silent`): one timer per
        heartbeat timeout, not one made and one cancelled per heartbeat (10,000 agents
        heartbeating every few seconds left thousands of cancelled calls in the
        reactor's heap)."""
        if record.last_heartbeat is None or record.status not in HEARTBEAT_WATCHED:
            _cancel(record.heartbeat_timer)
            record.heartbeat_timer = None
            return
        if record.heartbeat_timer is not None and record.heartbeat_timer.active():
            return
        self._arm_heartbeat(record)

    def _arm_heartbeat(self, record: AgentRecord) -> None:
        assert record.last_heartbeat is not None
        due = record.last_heartbeat + self.heartbeat_timeout - self.clock.seconds()
        record.heartbeat_timer = self.clock.callLater(max(0.0, due), self._heartbeat_silent, record)

    def _heartbeat_silent(self, record: AgentRecord) -> None:
        record.heartbeat_timer = None
        if record.status in HEARTBEAT_WATCHED:
            last = record.last_heartbeat
            if last is not None and last + self.heartbeat_timeout > self.clock.seconds():
                self._arm_heartbeat(record)  # it heartbeat since this timer was set
                return
            log.info(
                "agent {agent_id} silent for {seconds}s: disconnect",
                agent_id=record.agent_id,
                seconds=self.heartbeat_timeout,
            )
            self.set_status(record.agent_id, Status.DISCONNECT)

    # --- status and delivery ---

    def set_status(self, agent_id: str, status: str) -> AgentRecord:
        record = self.ensure(agent_id)
        changed = record.status != status
        record.status = status
        self._watch_heartbeat(record)
        if status in FINAL and record.retention_timer is None:
            record.retention_timer = self.clock.callLater(
                self.status_retention, self._retention_over, record
            )
        if changed and self.on_status_change is not None:
            self.on_status_change(record)
        return record

    def _retention_over(self, record: AgentRecord) -> None:
        """A finished agent's status was kept long enough for its page to see it: the
        record goes (the backend's database answers for the agent from now on)."""
        record.retention_timer = None
        if record.status not in FINAL or self.records.get(record.agent_id) is not record:
            return
        _cancel(record.grace_timer)
        _cancel(record.heartbeat_timer)
        del self.records[record.agent_id]
        if self.on_forget is not None:
            self.on_forget(record)

    def deliver(self, agent_id: str, packet: Packet) -> None:
        """Send to the agent now, or keep in its outbox until its next `alive`."""
        record = self.ensure(agent_id)
        if record.link is not None:
            self._send(record, record.link, packet)
            return
        if record.outbox is None:
            record.outbox = SizedQueue()
        record.outbox.append(packet, data_size(packet.data))
        self._trim(record, record.outbox, "outbox")
        if not record.outbox:
            record.outbox = None  # the packet alone was past the bound

    # --- bounds ---

    def _trim(self, record: AgentRecord, queue: SizedQueue[Any], what: str) -> None:
        """Drop the oldest of `queue` until it is within its bounds."""
        if not queue.over(self.max_outbox_packets, self.max_outbox_bytes):
            return
        while queue.over(self.max_outbox_packets, self.max_outbox_bytes):
            queue.popleft()
        self.log_once(
            record,
            what,
            "the {what} of agent {agent_id} is full ([router] max_outbox_packets = {packets},"
            " max_outbox_bytes = {size}): its oldest packets are dropped",
            what=what,
            packets=self.max_outbox_packets,
            size=self.max_outbox_bytes,
        )

    def take_update(self, agent_id: str) -> bool:
        """Whether a live update from the agent's browser is within its rate (else it is
        dropped): a bucket of `max_update_burst` tokens, `max_updates_per_second` back."""
        record = self.ensure(agent_id)
        now = self.clock.seconds()
        if record.update_rate is None:
            record.update_rate = TokenBucket(
                self.max_updates_per_second, self.max_update_burst, now
            )
        if record.update_rate.take(now):
            return True
        self.log_once(
            record,
            "rate",
            "agent {agent_id} sends more than {rate} live updates a second ([router]"
            " max_updates_per_second): the excess is dropped",
            rate=self.max_updates_per_second,
        )
        return False

    def log_once(self, record: AgentRecord, bound: str, message: str, **fields: Any) -> None:
        """Warn that the agent hit `bound`, the first time only: a flood of packets past a
        bound must not become a flood of log lines."""
        if record.logged is None:
            record.logged = set()
        elif bound in record.logged:
            return
        record.logged.add(bound)
        log.warn(message, agent_id=record.agent_id, **fields)
