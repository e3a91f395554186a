"""The router hub: routes packets between the backend link and agent links.

Knows no transport. Sockets and HTTP handlers call in; packets go out through
links (anything with `send_packet` and `close`). Pending HTTP requests are
Deferreds with timeouts on the injected clock.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from architect.config import RouterConfig
from architect.connection_events import ConnectionEvent
from architect.connection_events import ConnectionEventKind as Kind
from architect.log_rate import RateLimitedLog
from architect.log_text import capped
from architect.metrics import Metrics
from architect.nul import holds_nul
from architect.protocol import (
    AGENT_DETAILS,
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    COMPATIBLE_TASK_VERSIONS,
    CONFIRM,
    EVENTS,
    EXPECT_SOCKET_WITHIN,
    HEARTBEAT,
    LOG_ERROR,
    MAX_ID_LENGTH,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    MEPHISTO_TASK_VERSION,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    SUBMISSION_HANDLED,
    SUBMIT_ONBOARDING,
    UPDATE_STATUS,
    CloseCode,
    FailureReason,
    Handled,
    Outcome,
    Packet,
    Status,
    data_size,
    is_confirm_id,
    version_mismatch,
)
from architect.random_ids import new_request_id
from architect.router.errors import (
    Draining,
    Forbidden,
    InsufficientStorage,
    NoBackend,
    Refused,
    Unconfirmed,
    UnknownAgent,
)
from architect.router.event_buffer import SEND_EVERY, EventBuffer
from architect.router.journal import Journal, JournalError, JournalFull
from architect.router.queues import SizedQueue
from architect.router.requests import PendingRequests
from architect.router.state import AgentRecord, AgentTable

if TYPE_CHECKING:
    from architect.router.cluster_port import ClusterPort

log = Logger()

# A page's packets kept, per socket, while a restarted router waits for its backend to
# name the agents (the socket's first_packet_timeout still bounds how long).
HELD_PER_LINK = 16
HELD_BYTES = 8 * 1024 * 1024  # for all sockets together (their data, as protocol.data_size)
# More requests than this waiting for the backend, and the router is busy: its sockets'
# frames wait for the reactor's next turn, to be sent with more of them (turn_writes.py).
BUSY_WITH_REQUESTS = 8


class Link(Protocol):
    """One connection to the hub: a browser socket, the backend socket, or an in-process link."""

    def send_packet(self, packet: Packet) -> None: ...

    def close(self, code: int) -> None:
        """Close the link, saying why (a `protocol.CloseCode`)."""
        ...


@runtime_checkable
class ConfirmingLink(Link, Protocol):
    """A backend link that says when a packet is handled (for a submission: stored)."""

    def send_and_confirm(self, packet: Packet) -> Deferred[Handled]: ...


def _seconds(value: object) -> float | None:
    """A grace a backend asks for (protocol.RESUME): up to an hour, else none."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 3600:
        return float(value)
    return None


def _answer_to_worker(handled: Handled | None) -> None:
    """A submission's answer from what the backend made of it (None: no word from it; the
    journal holds the submission). Raises the refusal or failure the worker is told."""
    if handled is None or handled.outcome == Outcome.STORED:
        return
    if handled.outcome == Outcome.REFUSED:
        raise Refused(handled.reason or "the backend refused this submission")
    raise NoBackend("the backend could not store this submission; please submit again")


class RouterHub:
    def __init__(
        self,
        clock: IReactorTime,
        config: RouterConfig,
        socket_backends: bool = True,
        journal: Journal | None = None,
    ) -> None:
        self.clock = clock
        self.config = config
        # False when the backend runs in this process (embedded): none may come by socket.
        self.socket_backends = socket_backends
        self.agents = AgentTable(
            clock,
            disconnect_grace=config.disconnect_grace,
            heartbeat_timeout=config.heartbeat_timeout,
            max_outbox_packets=config.max_outbox_packets,
            replay_window=config.replay_window,
            bind_sessions=config.bind_agents_to_browser,
            status_retention=config.status_retention,
            on_forget=self._forgotten,
            max_outbox_bytes=config.max_outbox_bytes,
            max_updates_per_second=config.max_updates_per_second,
            max_update_burst=config.max_update_burst,
            heartbeat_gap=config.heartbeat_gap,
            on_heartbeat_gap=self._heartbeat_gap,
        )
        self.floods = RateLimitedLog(log, clock)
        self.metrics = Metrics(clock)  # the daemon's own, given by tap.py
        self.draining = False  # stopping: no new registrations (architect/drain.py)
        self.cluster: ClusterPort | None = None  # several routers over Redis (architect/cluster/)
        self.backend: Link | None = None
        # The backend again when it confirms what it stores (checked once, when it connects:
        # an isinstance against a runtime Protocol on every submission costs).
        self._confirming_backend: ConfirmingLink | None = None
        self.backend_came = False  # a backend link was taken at least once in this life
        self.backend_queue: SizedQueue[Packet] = SizedQueue()
        self.backend_queue_full = False  # logged, for this absence of the backend
        self.requests = PendingRequests(clock, config.request_timeout)
        self.link_agents: dict[Link, str] = {}  # agent links -> the agent each speaks for
        self.unnamed_links: dict[Link, IDelayedCall] = {}  # open, no first packet yet
        self.retired_backends: set[Link] = set()  # replaced backend links, closing
        self.last_mephisto_ping = 0.0  # seconds; the time the backend last sent anything
        # Whether the backend has told this router which agents exist. A router that
        # (re)started knows none until then; its backend, if in this process, told it first.
        self.agents_told = not socket_backends
        self._statuses_answered = False  # to the current backend link, at least once
        self._awaiting_agents: list[Deferred[None]] = []
        # Pages' first packets for agents not yet named, while agents_told is False.
        self._held_packets: dict[Link, list[tuple[Packet, str | None]]] = {}
        self._held_bytes = 0
        # Submissions kept on disk until the backend has them (router/journal.py); with a
        # backend that took up the confirmation extension, workers wait for its word.
        self.journal = journal
        self.backend_confirms = False
        self._confirmations: dict[str, Deferred[Handled | None]] = {}
        # The agents' connection events, for a backend that took the events extension.
        self.events = EventBuffer()
        self.backend_takes_events = False
        self._events_timer: IDelayedCall | None = None
        if journal is not None:
            for entry in journal.pending.values():  # from the router's last life: first out
                self.backend_queue.append(entry.packet, 0)

    def stop(self) -> None:
        """The router is stopping: cancel timers, answer pending requests."""
        self.agents.stop()
        if self._events_timer is not None and self._events_timer.active():
            self._events_timer.cancel()
        for timer in self.unnamed_links.values():
            timer.cancel()
        self.unnamed_links.clear()
        self.requests.fail_all(NoBackend("the router is shutting down"))
        self._agents_are_told()
        self._no_word_from_backend()

    # --- links ---

    def backend_may_connect(
        self, token: str | None, from_loopback: bool, origin: str | None = None
    ) -> bool:
        """Whether a socket (or a download) may act as the backend.

        Never a browser page (it sends an `Origin`), never over a socket when the backend
        is in this process; otherwise the configured token, or, only with
        `trust_loopback = on` and no token configured, a peer on loopback.
        """
        if origin is not None or not self.socket_backends:
            return False
        expected = self.config.backend_token
        if expected:
            return token is not None and hmac.compare_digest(
                token.encode("utf-8"), expected.encode("utf-8")
            )
        return from_loopback and self.config.trust_loopback

    def link_packet(
        self,
        link: Link,
        packet: Packet,
        token: str | None = None,
        from_loopback: bool = False,
        origin: str | None = None,
        session: str | None = None,
    ) -> None:
        """A packet arrived on a link. The first one decides who the link speaks for;
        `session` is the browser's (router/sessions.py), `token` the backend's."""
        packet.router_incoming_timestamp = self.clock.seconds()
        if link is self.backend:
            self.from_backend(packet)
            return
        if link in self.retired_backends:
            return
        agent_id = self.link_agents.get(link)
        if agent_id is None:
            if not self._name(link, packet, token, from_loopback, origin, session):
                return
            agent_id = packet.subject_id
        if packet.subject_id != agent_id:
            self.floods.warn(
                "other agent",
                "dropped a {t} packet for agent {other} from the socket of agent {agent_id}",
                t=packet.packet_type,
                other=packet.subject_id[:MAX_ID_LENGTH],
                agent_id=agent_id,
            )
            return
        self.from_agent(link, agent_id, packet)

    def _name(
        self,
        link: Link,
        packet: Packet,
        token: str | None,
        from_loopback: bool,
        origin: str | None,
        session: str | None,
    ) -> bool:
        """A packet on a link that speaks for no one yet: True if it now speaks for the
        agent the packet names. A packet naming an agent the backend never vouched for
        is dropped; the link's first_packet_timeout keeps running."""
        subject = packet.subject_id
        if packet.packet_type == ALIVE and subject == MEPHISTO:
            self._stop_waiting(link)
            if self.backend_may_connect(token, from_loopback, origin):
                taken = packet.data.get("extensions")
                taken = taken if isinstance(taken, list) else []
                self.backend_connected(link, confirms=CONFIRM in taken, events=EVENTS in taken)
            else:
                log.warn("refused a backend connection ({why})", why=self._refusal(origin))
                link.close(CloseCode.REFUSED)
            return False
        if subject == MEPHISTO:
            self.floods.warn(
                "backend before alive",
                "dropped a {t} packet naming the backend before alive",
                t=packet.packet_type,
            )
            return False
        record = self.agents.get(subject) if len(subject) <= MAX_ID_LENGTH else None
        if record is None and not self.agents_told and self._hold(link, packet, session):
            return False  # this router restarted: its backend has yet to name its agents
        if record is None and self.cluster is not None:
            if self.cluster.look_up(link, packet, session):
                return False  # another router may know it: asked, the packet is taken again
        if record is None:
            self.floods.warn(
                "unknown agent",
                "dropped a packet ({t}) for an agent the backend never named ({agent_id})",
                t=packet.packet_type,
                agent_id=subject[:MAX_ID_LENGTH],
            )
            return False
        self._stop_waiting(link)
        if not self.agents.claim(record, session):
            self.floods.warn(
                "other browser",
                "a socket of another browser spoke for agent {a}: closed",
                a=subject,
            )
            link.close(CloseCode.NOT_YOURS)
            return False
        self.link_agents[link] = subject
        self.note(subject, Kind.RELOAD if record.had_socket else Kind.SOCKET_OPEN)
        record.had_socket = True
        self.agents.attach(subject, link)
        if self.cluster is not None:
            self.cluster.socket_attached(subject, link)
        self._send_status(subject)
        return True

    def _hold(self, link: Link, packet: Packet, session: str | None) -> bool:
        """Keep a page's first packets (its alive, what it sent next) until the backend has
        said which agents exist; False once the link holds HELD_PER_LINK already."""
        held = self._held_packets.setdefault(link, [])
        size = data_size(packet.data)
        if len(held) >= HELD_PER_LINK or self._held_bytes + size > HELD_BYTES:
            return False
        held.append((packet, session))
        self._held_bytes += size
        return True

    def _release_held(self) -> None:
        """The backend named its agents: each held page's packets are taken as if new."""
        held, self._held_packets = self._held_packets, {}
        self._held_bytes = 0
        for link, packets in held.items():
            for packet, session in packets:
                if link in self.unnamed_links or link in self.link_agents:
                    self.link_packet(link, packet, session=session)

    def _stop_waiting(self, link: Link) -> None:
        unnamed = self.unnamed_links.pop(link, None)
        if unnamed is not None:
            unnamed.cancel()

    def _forgotten(self, record: AgentRecord) -> None:
        """The table forgot a finished agent: its socket is closed (nothing more will
        come for it; its page already shows the final status)."""
        link = cast(Link | None, record.link)  # the table holds the links the hub gave it
        if link is not None and self.link_agents.pop(link, None) is not None:
            link.close(CloseCode.FINISHED)

    def _refusal(self, origin: str | None) -> str:
        if origin is not None:
            return f"a browser page at {origin[:100]!r} spoke as the backend"
        if not self.socket_backends:
            return "this router's backend runs in its own process"
        return "wrong or missing token"

    def link_opened(self, link: Link) -> None:
        """A socket opened: it has `first_packet_timeout` seconds to say whom it speaks for
        (an idle socket would hold a file descriptor and memory for nothing)."""
        self.unnamed_links[link] = self.clock.callLater(
            self.config.first_packet_timeout, self._silent, link
        )

    def _silent(self, link: Link) -> None:
        if self.unnamed_links.pop(link, None) is not None:
            link.close(CloseCode.SILENT)

    def link_lost(self, link: Link, code: int | None = None) -> None:
        """A link closed; `code`: a socket's close code (None: it closed without one)."""
        for packet, _ in self._held_packets.pop(link, []):
            self._held_bytes -= data_size(packet.data)
        unnamed = self.unnamed_links.pop(link, None)
        if unnamed is not None:
            unnamed.cancel()
        if link is self.backend:
            log.info("backend disconnected")
            self.backend = None
            self._confirming_backend = None
            self._take_back_unconfirmed()
            return
        self.retired_backends.discard(link)
        agent_id = self.link_agents.pop(link, None)
        if agent_id is not None:
            self.note(agent_id, Kind.SOCKET_CLOSE, code=code or CloseCode.ABNORMAL)
            self.agents.detach(agent_id, link)
            if self.cluster is not None:
                self.cluster.socket_detached(agent_id)

    def backend_connected(self, link: Link, confirms: bool = False, events: bool = False) -> None:
        """A backend's link; `confirms`, `events`: it took up that extension."""
        old = self.backend
        if old is not None and old is not link:
            self.backend = None
            self._take_back_unconfirmed()  # the new link gets them again
        self.backend = link
        self._confirming_backend = link if isinstance(link, ConfirmingLink) else None
        self.backend_came = True
        self.backend_confirms = confirms and self.journal is not None
        self.backend_takes_events = events
        if not events:
            self.events.clear()  # it would not know them (Mephisto's backend)
        elif self.events:
            self._send_events_soon()
        self._statuses_answered = False
        self.last_mephisto_ping = self.clock.seconds()
        if old is not None and old is not link:
            log.info("a new backend connection replaces the old one")
            self.retired_backends.add(old)
            old.close(CloseCode.REPLACED)
        log.info("backend connected")
        # Requests the old connection never answered go to the new one.
        for packet in self.requests.unanswered():
            link.send_packet(self._stamp_out(packet))
        while self.backend_queue and self.backend is link:
            self._send_to_backend(link, self.backend_queue.popleft())

    # --- connection events (connection_events.py) ---

    def note(
        self, agent_id: str, kind: str, code: int | None = None, seconds: float | None = None
    ) -> None:
        """A connection event of an agent, for a backend that takes them: kept (bounded)
        while no backend is connected, dropped while one that does not take them is."""
        if self.backend is not None and not self.backend_takes_events:
            return
        self.events.add(ConnectionEvent(agent_id, kind, self.clock.seconds(), code, seconds))
        if self.backend is not None:
            self._send_events_soon()

    def _heartbeat_gap(self, record: AgentRecord, seconds: float) -> None:
        self.note(record.agent_id, Kind.HEARTBEAT_GAP, seconds=seconds)

    def _send_events_soon(self) -> None:
        """In batches, every SEND_EVERY seconds at most: not a packet per event."""
        if self._events_timer is None or not self._events_timer.active():
            self._events_timer = self.clock.callLater(SEND_EVERY, self._send_events)

    def send_events_now(self) -> None:
        """What waits for the backend, sent at once (a stopping router)."""
        if self._events_timer is not None and self._events_timer.active():
            self._events_timer.cancel()
        self._send_events()

    def _send_events(self) -> None:
        self._events_timer = None
        backend = self.backend
        if backend is None or not self.backend_takes_events:
            return
        for packet in self.events.packets():
            backend.send_packet(self._stamp_out(packet))

    # --- packets from agents ---

    def from_agent(self, link: Link, agent_id: str, packet: Packet) -> None:
        kind = packet.packet_type
        if kind == ALIVE:
            self.agents.attach(agent_id, link)
        elif kind == HEARTBEAT:
            record = self.agents.heartbeat(agent_id)
            if record is None:
                return
            reply = Packet(
                HEARTBEAT,
                agent_id,
                {
                    "last_mephisto_ping": int(self.last_mephisto_ping * 1000),
                    "status": record.status,
                },
            )
            link.send_packet(self._stamp_out(reply))
        elif kind == MEPHISTO_BOUND_LIVE_UPDATE:
            if holds_nul(packet.data.get("update_id")):  # a column of its own: architect/nul.py
                self.floods.warn(
                    "nul update id",
                    "dropped a live update of agent {agent_id}: a NUL in its update_id",
                    agent_id=agent_id,
                )
                self.metrics.live_update("dropped")
            elif self.agents.take_update(agent_id):  # else over its rate: dropped, logged once
                self.metrics.live_update("in")
                self.to_backend(packet, droppable=True)
            else:
                self.metrics.live_update("dropped")
        else:
            log.warn("dropped a {t} packet from agent {agent_id}", t=kind, agent_id=agent_id)

    def _send_status(self, agent_id: str) -> None:
        """A worker who (re)connects learns its current status at once."""
        record = self.agents.get(agent_id)
        if record is not None and record.status != Status.NONE:
            self.agents.deliver(
                agent_id,
                self._stamp_out(Packet(UPDATE_STATUS, agent_id, {"status": record.status})),
            )

    # --- packets from the backend ---

    def from_backend(self, packet: Packet) -> None:
        self.last_mephisto_ping = self.clock.seconds()
        kind = packet.packet_type
        if kind == AGENT_DETAILS:
            self._answer_pending(packet)
        elif kind == CLIENT_BOUND_LIVE_UPDATE:
            self.metrics.live_update("out")
            record = self.agents.get(packet.subject_id)
            here = record is not None and record.link is not None
            packet = self._stamp_out(packet)
            if self.cluster is None or self.cluster.live_update(packet, here):
                self.agents.deliver(packet.subject_id, packet)
        elif kind == UPDATE_STATUS:
            status = packet.data.get("status")
            if not isinstance(status, str):
                log.warn("dropped an update_status without a status string")
                return
            seat = packet.data.get(EXPECT_SOCKET_WITHIN)
            if seat is not None:  # protocol.RESUME: for this router, not for the page
                packet.data = {k: v for k, v in packet.data.items() if k != EXPECT_SOCKET_WITHIN}
            record = self.agents.set_status(packet.subject_id, status)
            record.served_here = True  # its backend sends it through this router
            grace = _seconds(seat)
            if grace is not None and record.link is None:
                self.agents.expect(packet.subject_id, status, grace)
            if self.cluster is None or record.link is not None:  # else told by the cluster
                self.agents.deliver(packet.subject_id, self._stamp_out(packet))
        elif kind == REQUEST_STATUSES:
            self._send_again_unconfirmed()
            if self._statuses_answered:
                # It asks again: it has pushed the statuses our last answer lacked.
                self._agents_are_told()
            self._return_statuses()
            self._statuses_answered = True
        elif kind == SUBMISSION_HANDLED:
            self._handled(packet)
        elif kind == ALIVE:
            pass  # a backend that says alive again on its socket
        else:
            log.warn("dropped a {t} packet from the backend", t=kind)

    def _return_statuses(self) -> None:
        """Every agent's status (one of several routers: of those it serves, so the backend
        does not read each status N times), in packets that stay far below the message
        size limit (this router's, and at most 256 kB: the backend's may be smaller), then
        an empty packet, which tells the backend the answer is whole."""
        budget = min(self.config.max_message_bytes // 2, 256 * 1024)
        part: dict[str, str] = {}
        size = 0
        for agent_id, status in self.agents.statuses(self.cluster is not None).items():
            entry = len(json.dumps(agent_id)) + len(json.dumps(status)) + 2  # `"id": "s", `
            if part and size + entry > budget:
                self.to_backend(Packet(RETURN_STATUSES, MEPHISTO, part))
                part, size = {}, 0
            part[agent_id] = status
            size += entry
        if part:
            self.to_backend(Packet(RETURN_STATUSES, MEPHISTO, part))
        self.to_backend(Packet(RETURN_STATUSES, MEPHISTO, {}))

    def _answer_pending(self, packet: Packet) -> None:
        request_id = packet.data.get("request_id", packet.subject_id)
        if not self.requests.is_pending(request_id):
            log.info(
                "agent_details for no pending request ({rid}): dropped",
                rid=capped(request_id, MAX_ID_LENGTH),
            )
            return
        assert isinstance(request_id, str)
        self.requests.answer(request_id, self._stamp_out(packet).to_dict())

    def _claimed(self, answer: dict[str, Any], session: str | None) -> dict[str, Any]:
        """An `agent_details` answer as the asking browser gets it: the agent is bound to
        its session, or, when another browser's, a refusal that does not name it."""
        data = answer.get("data")
        agent_id = data.get("agent_id") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(agent_id, str) or not agent_id:
            return answer
        record = self.agents.ensure(agent_id)
        record.registered_here = record.served_here = True
        if not self.agents.claim(record, session):
            self.floods.warn(
                "other browser", "another browser asked for agent {a}: refused", a=agent_id
            )
            refusal = {
                "request_id": data.get("request_id"),
                "worker_id": data.get("worker_id"),
                "agent_id": None,
                "init_task_data": None,
                "failure_reason": FailureReason.OTHER_BROWSER,
            }
            return {**answer, "data": refusal}
        init_task_data = data.get("init_task_data")
        if isinstance(init_task_data, dict) and "past_live_updates" in init_task_data:
            self.agents.history_delivered(agent_id)
        return answer

    # --- to the backend ---

    def to_backend(self, packet: Packet, droppable: bool = False) -> bool:
        """Send now, or keep until the backend is back. False if it could not be kept."""
        if self.backend is not None:
            self._send_to_backend(self.backend, packet)
            return True
        if packet.confirm_id is not None:  # journaled: bounded by the journal's own bound
            self.backend_queue.append(packet, 0)
            return True
        queue, size = self.backend_queue, data_size(packet.data)
        if not queue:
            self.backend_queue_full = False  # a new absence: its first overflow is logged
        limits = self.config.max_backend_queue_packets, self.config.max_backend_queue_bytes
        if not queue.fits(size, *limits):
            if not self.backend_queue_full:
                self.backend_queue_full = True
                log.warn(
                    "the backend is away and its queue is full ([router] max_backend_queue_"
                    "packets = {packets}, max_backend_queue_bytes = {size}): until it is back,"
                    " live updates and errors are dropped and submissions refused (503);"
                    " first: {what} a {t} packet",
                    packets=limits[0],
                    size=limits[1],
                    what="dropped" if droppable else "refused",
                    t=packet.packet_type,
                )
            return False
        queue.append(packet, size)
        return True

    # --- journaled submissions (router/journal.py) ---

    def _send_to_backend(self, link: Link, packet: Packet) -> None:
        """A journaled submission goes with its id to a backend that confirms; to one that
        does not (Mephisto's) without it, and is done with once written, as before."""
        confirm_id = packet.confirm_id
        if confirm_id is None or self.journal is None:
            link.send_packet(self._stamp_out(packet))
            return
        entry = self.journal.pending.get(confirm_id)
        if entry is None:
            return  # confirmed meanwhile (by an earlier link)
        if self.backend_confirms:
            entry.sent_at = self.clock.seconds()
            link.send_packet(self._stamp_out(packet))
            return
        link.send_packet(self._stamp_out(attrs.evolve(packet, confirm_id=None)))
        self.journal.done(confirm_id)
        self._tell_worker(confirm_id, None)

    def _handled(self, packet: Packet) -> None:
        """The backend's word on a journaled submission."""
        data = packet.data
        confirm_id, outcome = data.get("confirm_id"), data.get("outcome")
        if self.journal is None or not is_confirm_id(confirm_id) or outcome not in Outcome.ALL:
            self.floods.warn("odd confirmation", "dropped an odd submission_handled packet")
            return
        assert isinstance(confirm_id, str) and isinstance(outcome, str)
        entry = self.journal.pending.get(confirm_id)
        if entry is None:
            return  # a repeat, or from an earlier life of this router's journal
        reason = data.get("reason")
        handled = Handled(outcome, capped(reason, 500) if isinstance(reason, str) else "")
        if outcome == Outcome.FAILED:
            entry.sent_at = None  # sent again at the backend's next request_statuses
            log.warn(
                "the backend could not store a submission of agent {a} yet: it is sent again",
                a=entry.packet.subject_id,
            )
            self._tell_worker(confirm_id, None)
            return
        self.journal.done(confirm_id)
        if outcome == Outcome.REFUSED and confirm_id not in self._confirmations:
            log.info(
                "the backend refused a submission of agent {a} it got from the journal: {why}",
                a=entry.packet.subject_id,
                why=handled.reason,
            )
        self._tell_worker(confirm_id, handled)

    def _tell_worker(self, confirm_id: str, handled: Handled | None) -> None:
        waiting = self._confirmations.pop(confirm_id, None)
        if waiting is not None:
            waiting.callback(handled)

    def _no_word_from_backend(self) -> None:
        """Workers waiting for the backend's word get their answer: the journal has it."""
        waiting, self._confirmations = self._confirmations, {}
        for d in waiting.values():
            d.callback(None)

    def _take_back_unconfirmed(self) -> None:
        """The backend link is gone: what it was sent and did not confirm goes to the next
        one first, in order; workers waiting for its word are answered."""
        self._no_word_from_backend()
        if self.journal is None:
            return
        out = [e for e in self.journal.pending.values() if e.sent_at is not None]
        for entry in reversed(out):
            entry.sent_at = None
            self.backend_queue.appendleft(entry.packet, 0)

    def _send_again_unconfirmed(self) -> None:
        """At each request_statuses of a confirming backend: what it could not store, and
        what it never answered within request_timeout, goes again (it stores each once)."""
        if self.journal is None or not self.backend_confirms or self.backend is None:
            return
        stale = self.clock.seconds() - self.config.request_timeout
        for entry in list(self.journal.pending.values()):
            if entry.sent_at is None or entry.sent_at < stale:
                self._send_to_backend(self.backend, entry.packet)

    def _journaled(
        self, packet: Packet, journal: Journal, files: tuple[Path, ...]
    ) -> Deferred[None]:
        """Journal, send (or keep), and answer once it is on disk, and, with a confirming
        backend connected, once it has said what it made of it. One of several routers
        answers only with a confirming backend's word that it stored the submission: its
        journal is on its own disk, stranded there if it dies for good."""
        if self.cluster is not None and self.backend is None:
            raise NoBackend("no backend is connected to this router; please submit again")
        try:
            _, durable = journal.add(packet, files)
        except JournalFull:
            raise NoBackend(
                "the router holds too many submissions its backend has not confirmed"
                " ([router] max_journal_bytes); try again shortly"
            ) from None
        except JournalError as e:
            log.critical("the router journal: {why}", why=str(e))
            raise InsufficientStorage("the router cannot keep this submission now") from None
        word: Deferred[Handled | None] | None = None
        if self.backend is not None and self.backend_confirms:
            confirm_id = packet.confirm_id
            assert confirm_id is not None
            word = self._confirmations[confirm_id] = Deferred()

            def no_more_waiting(result: Handled | None) -> Handled | None:
                self._confirmations.pop(confirm_id, None)
                return result

            # No word within request_timeout: the worker's answer comes from the journal.
            word.addTimeout(
                self.config.request_timeout, self.clock, onTimeoutCancel=lambda *_: None
            ).addBoth(no_more_waiting)
        self.to_backend(packet)

        async def answer() -> None:
            try:
                await durable
            except JournalError:
                raise InsufficientStorage("the router cannot keep this submission now") from None
            handled = await word if word is not None else None
            if handled is None and word is not None and self.cluster is not None:
                raise Unconfirmed("the backend has not said it stored this; please submit again")
            _answer_to_worker(handled)

        return Deferred.fromCoroutine(answer())

    def _incoming(
        self,
        packet_type: str,
        subject_id: str,
        data: dict[str, Any],
        client_timestamp: float | None,
    ) -> Packet:
        """A packet made of a worker's HTTP request, stamped as it came in."""
        return Packet(
            packet_type,
            subject_id,
            data,
            client_timestamp=client_timestamp,
            router_incoming_timestamp=self.clock.seconds(),
        )

    def _stamp_out(self, packet: Packet) -> Packet:
        packet.router_outgoing_timestamp = self.clock.seconds()
        return packet

    # --- HTTP requests ---

    def _ask_backend(
        self, packet: Packet, request_id: str, session: str | None
    ) -> Deferred[dict[str, Any]]:
        """Send a request the backend answers with `agent_details`, for this session."""
        if self.draining:
            raise Draining("this router is restarting; try again shortly")
        if self.backend is None and (self.socket_backends or self.backend_came):
            raise NoBackend("no backend is connected to this router; try again shortly")
        # (An embedded backend still opening its database, longer on PostgreSQL, is sure to
        # come: the request waits for it, within request_timeout, and is sent when it does.)
        answered = self.requests.add(request_id, packet)
        if self.backend is not None:
            self.backend.send_packet(self._stamp_out(packet))
        claimed = answered.addCallback(self._claimed, session)
        if self.cluster is not None:  # the page's socket may land on another router
            claimed.addCallback(self.cluster.registered)
        return claimed

    def busy(self) -> bool:
        """Many requests wait for the backend: the link's frames may wait a turn
        (turn_writes.py)."""
        return len(self.requests) > BUSY_WITH_REQUESTS

    def request_agent(
        self, provider_data: dict[str, Any], client_timestamp: float | None, session: str | None
    ) -> Deferred[dict[str, Any]]:
        request_id = new_request_id()
        data = {"provider_data": provider_data, "request_id": request_id}
        packet = self._incoming(REGISTER_AGENT, request_id, data, client_timestamp)
        asked = self._ask_backend(packet, request_id, session)
        return self.metrics.timed(self.metrics.registration_seconds, asked)

    def submit_onboarding(
        self,
        agent_id: str,
        provider_data: dict[str, Any],
        client_timestamp: float | None,
        session: str | None,
    ) -> Deferred[dict[str, Any]]:
        self.check_agent(agent_id, session)
        request_id = new_request_id()
        data = {k: v for k, v in provider_data.items() if k != "USED_AGENT_ID"}
        data["request_id"] = request_id
        packet = self._incoming(SUBMIT_ONBOARDING, agent_id, data, client_timestamp)
        return self._ask_backend(packet, request_id, session)

    def agents_to_come(self) -> None:
        """The backend in this process has yet to say which agents it carries on (it is
        taking them back from the database): requests for agents unknown meanwhile wait
        for `agents_known`, as they do at a separate router that restarted."""
        self.agents_told = False

    def agents_known(self) -> None:
        """The backend in this process has said which agents exist (`expect_agents`)."""
        self._agents_are_told()

    def finished_lately(self, statuses: Mapping[str, str]) -> None:
        """Agents a backend restarted with this router (embedded) saw finish shortly before:
        their pages' late requests get their status, not 404 (kept status_retention)."""
        for agent_id, status in statuses.items():
            self.agents.set_status(agent_id, status)

    def expect_agents(self, statuses: Mapping[str, str], grace: float | None) -> None:
        """Agents a backend restarted with this router (embedded) carries on: see
        AgentTable.expect. Without it, the new router would answer their pages 404."""
        for agent_id, status in statuses.items():
            self.agents.expect(agent_id, status, grace)

    def agents_told_yet(self) -> Deferred[None] | None:
        """None if the backend has told this router which agents exist; else a Deferred
        that fires once it has, or after `request_timeout` (bounded: each waiter is an
        open request, and connections are capped).

        A backend tells a restarted router its agents in answer to the router's first
        `return_statuses`: once it asks for statuses again, all of them are in."""
        if self.agents_told:
            return None
        told: Deferred[None] = Deferred()
        self._awaiting_agents.append(told)
        timer = self.clock.callLater(self.config.request_timeout, self._stop_awaiting, told)

        def no_more_waiting(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return told.addCallback(no_more_waiting)

    def _stop_awaiting(self, told: Deferred[None]) -> None:
        if told in self._awaiting_agents:
            self._awaiting_agents.remove(told)
            told.callback(None)

    def _agents_are_told(self) -> None:
        if not self.agents_told:
            log.info("the backend has told this router its agents")
        self.agents_told = True
        waiting, self._awaiting_agents = self._awaiting_agents, []
        for told in waiting:
            told.callback(None)
        self._release_held()

    def check_agent(self, agent_id: str, session: str | None) -> None:
        """Raise unless the agent is known and this browser session's to act for."""
        record = self.agents.get(agent_id)
        if record is None:
            raise UnknownAgent(f"unknown agent {agent_id!r}", agent_id)
        if not self.agents.claim(record, session):
            self.floods.warn(
                "other browser", "another browser acted for agent {a}: refused", a=agent_id
            )
            raise Forbidden("this agent belongs to another browser")

    def submit(
        self,
        packet_type: str,
        agent_id: str,
        data: dict[str, Any],
        client_timestamp: float | None,
        session: str | None,
        files: tuple[Path, ...] = (),
    ) -> Deferred[None]:
        """A submission (its uploads stored as `files`): fires when the worker may be told
        it is kept.

        With the backend in this process, that is once it is stored; with a journal (a
        separate router), once it is on disk, and, while a confirming backend is
        connected, once it is stored (or refused: then it fails with Refused).
        Raises (or fails) with a RouterError (router/errors.py) when it cannot be kept or stored.
        """
        self.check_agent(agent_id, session)
        kept = self._submit(packet_type, agent_id, data, client_timestamp, files)
        return self.metrics.timed(self.metrics.submission_seconds, kept)

    def _submit(
        self,
        packet_type: str,
        agent_id: str,
        data: dict[str, Any],
        client_timestamp: float | None,
        files: tuple[Path, ...],
    ) -> Deferred[None]:
        packet = self._incoming(packet_type, agent_id, data, client_timestamp)
        confirming = self._confirming_backend
        if confirming is not None and confirming is self.backend:
            confirmed = confirming.send_and_confirm(self._stamp_out(packet))
            return confirmed.addCallback(_answer_to_worker)
        if self.journal is not None:
            return self._journaled(packet, self.journal, files)
        if not self.to_backend(packet):
            raise NoBackend("the backend is away and the router cannot hold more; try again")
        return succeed(None)

    def log_error(
        self, agent_id: str, error_data: Any, client_timestamp: float | None, session: str | None
    ) -> None:
        """A page's error report, forwarded as Mephisto's routers do: its error_data is the
        packet's data (which must be an object: anything else goes as {"error_data": ...})."""
        self.check_agent(agent_id, session)
        if error_data is None:
            data: dict[str, Any] = {}
        else:
            data = error_data if isinstance(error_data, dict) else {"error_data": error_data}
        packet = self._incoming(LOG_ERROR, agent_id, data, client_timestamp)
        self.metrics.browser_error(agent_id, capped(data, 300))
        self.to_backend(packet, droppable=True)

    def task_config_for(self, task_config: dict[str, Any], version: str | None) -> dict[str, Any]:
        """The config a browser gets; a client of another version is reported to the backend."""
        answer = dict(task_config)
        if version in COMPATIBLE_TASK_VERSIONS:
            answer["mephisto_task_version"] = version
        else:
            answer["mephisto_task_version"] = MEPHISTO_TASK_VERSION
            if version is not None:
                mismatch = version_mismatch(version)
                log.warn(
                    "a browser runs mephisto-task {v}, expected {e}",
                    v=mismatch["received_version"],
                    e=MEPHISTO_TASK_VERSION,
                )
                self.to_backend(Packet(LOG_ERROR, MEPHISTO, mismatch), droppable=True)
        return answer
