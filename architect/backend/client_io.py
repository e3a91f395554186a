"""ClientIOHandler: the backend's side of the Architect protocol.

Packets come in from channels (one per router) and are dispatched by type to
one handler method each; answers and agent traffic go out through channels.
Registration decisions come from a `WorkerPool`, submissions go to a
`SubmissionStore`: the handler knows no transport and no storage.

Mephisto's Node router sends every packet twice: requests are answered once
(by request id), submissions stored once (by content), live updates taken
once (by update id). Every such memory is bounded.

Agents are held while they work (the pool's registry, the routes); a packet about
one that finished goes to `FinishedAgents`, for which the database answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.backend.channel import Channel
from architect.backend.connection_events import ConnectionEventLog
from architect.backend.finished import FinishedAgents
from architect.backend.page_sockets import PageSockets
from architect.backend.registration import BadRegistration, Registration, WorkerPool
from architect.backend.resume import Resumption
from architect.backend.routes import AgentRoutes
from architect.backend.store import SubmissionStore, names_files
from architect.backend.write_barrier import WriteBarrier
from architect.config import BackendConfig
from architect.connection_events import ConnectionEvent, from_wire
from architect.connection_events import ConnectionEventKind as Kind
from architect.lifecycle import PUSHED_ACTIVE, is_active
from architect.log_text import UNPRINTABLE, capped, printable
from architect.metrics import Metrics
from architect.nul import holds_nul
from architect.protocol import (
    AGENT_DETAILS,
    CONNECTION_EVENTS,
    EXPECT_SOCKET_WITHIN,
    LOG_ERROR,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RESUME,
    RETURN_STATUSES,
    SUBMISSION_HANDLED,
    SUBMIT_METADATA,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    FailureReason,
    Handled,
    Outcome,
    Packet,
    Status,
    SubmissionRefused,
)
from architect.recent import RecentKeys
from architect.tasks.agent import Agent

log = Logger()

# The submissions counted in the metrics, by packet type.
SUBMISSION_KINDS = {
    SUBMIT_UNIT: "unit",
    SUBMIT_METADATA: "metadata",
    SUBMIT_ONBOARDING: "onboarding",
}
PacketHandler = Callable[[Channel, Packet], "Deferred[None] | None"]


def fingerprint(packet: Packet) -> str:
    """What makes two packets the same submission (router timestamps aside)."""
    raw = json.dumps(
        [packet.packet_type, packet.subject_id, packet.data, packet.client_timestamp],
        sort_keys=True,
        separators=(",", ":"),
        default=repr,
    )
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ClientIOHandler:
    def __init__(
        self,
        clock: IReactorTime,
        pool: WorkerPool,
        store: SubmissionStore,
        status_interval: float = BackendConfig().status_interval,
        remembered_ids: int = 10_000,
        on_unit_submitted: Callable[[Agent, dict[str, Any]], object] | None = None,
        resumption: Resumption | None = None,
        barrier: WriteBarrier | None = None,
        events: ConnectionEventLog | None = None,
    ) -> None:
        self.clock = clock
        self.events = events  # the agents' connection events, kept with the run
        self.on_unit_submitted = on_unit_submitted  # e.g. the task's validate_submission
        self.pool = pool
        self.store = store
        self.status_interval = status_interval
        self.channels: list[Channel] = []
        self.routes = AgentRoutes(clock, barrier)  # barrier: the recorder's (routes.py)
        self.routes.all_channels = self.channels
        self.finished = FinishedAgents(pool, store, self.routes)  # agents no longer held
        self.page_sockets = PageSockets()  # which router holds each page's socket
        self.answered_requests = RecentKeys(remembered_ids)
        self.stored_submissions = RecentKeys(remembered_ids)
        # Agents whose unit submission is being saved: the repeats waiting on it (a repeat
        # is answered as its first copy is, never "stored" before that commit).
        self.unit_saves: dict[str, list[Deferred[None]]] = {}
        self.repeats: set[Deferred[None]] = set()  # those answers: not counted again
        self.on_catastrophic_loss: Callable[[Channel], None] | None = None
        self.metrics = Metrics(clock)  # the daemon's own, given by tap.py
        # The agents taken back at a restart, bound to the first router that shows each.
        self.resumption = resumption if resumption is not None else Resumption(clock)
        # Per channel: the agents its router's answer to `request_statuses` showed so far
        # (an answer may come in several packets, the last one empty).
        self.shown: dict[Channel, set[str]] = {}
        self._status_loop = LoopingCall(self.request_statuses)
        self._status_loop.clock = clock
        self.handlers: dict[str, PacketHandler] = {
            REGISTER_AGENT: self.handle_register_agent,
            SUBMIT_ONBOARDING: self.handle_submit_onboarding,
            SUBMIT_UNIT: self.handle_submit_unit,
            SUBMIT_METADATA: self.handle_submit_metadata,
            MEPHISTO_BOUND_LIVE_UPDATE: self.handle_live_update,
            RETURN_STATUSES: self.handle_return_statuses,
            LOG_ERROR: self.handle_log_error,
            CONNECTION_EVENTS: self.handle_connection_events,
        }

    # --- life cycle ---

    def add_channel(self, channel: Channel) -> None:
        channel.on_open = self.channel_opened
        channel.on_message = self.handle_packet
        channel.on_catastrophic_loss = self.channel_lost
        channel.on_lost = self.router_lost
        self.channels.append(channel)

    def start(self) -> None:
        """Start asking every router for statuses each `status_interval` seconds."""
        if not self._status_loop.running:
            self._status_loop.start(self.status_interval, now=False)

    def stop(self) -> None:
        if self._status_loop.running:
            self._status_loop.stop()
        self.resumption.stop()
        self.pool.stop()

    # --- agents taken back after a restart ---

    def _claim(self, channel: Channel, agent_id: str) -> None:
        agent = self.resumption.claim(agent_id)
        if agent is not None:
            self._carry_on(agent, channel)

    def _carry_on(self, agent: Agent, channel: Channel) -> None:
        log.info(
            "agent {agent_id} carries on through channel {channel}",
            agent_id=agent.agent_id,
            channel=channel.channel_id,
        )
        self.bind_agent(agent, channel)  # its status, kept meanwhile, goes out now

    def channel_opened(self, channel: Channel) -> None:
        log.info("channel {channel} open", channel=channel.channel_id)
        if len(self.channels) == 1:
            # The only router is where pages without a socket (static, onboarding) will
            # submit: it must know them, even if it restarted too and knows no one.
            for agent in self.resumption.claim_unwatched():
                self._carry_on(agent, channel)
            if RESUME in channel.extensions:
                # A router that restarted too would not know the others either, and drop
                # their pages' packets: it is told them, and holds their seats meanwhile.
                for agent in self.resumption.claim_all():
                    self._carry_on(agent, channel)
                    data = {"status": agent.status, EXPECT_SOCKET_WITHIN: self.resumption.window}
                    self.routes.send(channel, Packet(UPDATE_STATUS, agent.agent_id, data))
        if RESUME in channel.extensions:
            self._tell_finished_recently(channel)
        # Learn at once what a (re)started router knows, so statuses are re-pushed quickly.
        self.routes.send(channel, Packet(REQUEST_STATUSES, MEPHISTO, {}))

    def _tell_finished_recently(self, channel: Channel) -> None:
        """A router that may have restarted is told the agents that finished lately: a
        page that submitted just before its crash, and sends again, gets its answer (the
        submission is known here) rather than "unknown agent"."""

        def tell(statuses: dict[str, str]) -> None:
            for agent_id, status in statuses.items():
                if self.pool.get_agent(agent_id) is None:
                    self.routes.send(channel, Packet(UPDATE_STATUS, agent_id, {"status": status}))

        def failed(failure: Failure) -> None:
            log.failure("reading the agents finished lately failed", failure)

        self.pool.recently_finished().addCallbacks(tell, failed)

    def channel_lost(self, channel: Channel) -> None:
        """The channel could not reach its router for too long: its live agents are lost."""
        lost = self.routes.agents_on(channel)
        if self.routes.any_open_channel and any(c.is_open for c in self.channels):
            lost = []  # the other routers reach their pages (architect/cluster/)
        log.critical(
            "lost the router of channel {channel} for good; {n} agents are disconnected",
            channel=channel.channel_id,
            n=len(lost),
        )
        for agent_id in lost:
            agent = self.pool.get_agent(agent_id)
            if agent is not None and agent.is_active:
                agent.set_status(Status.DISCONNECT, push=False)
        if self.on_catastrophic_loss is not None:
            self.on_catastrophic_loss(channel)

    def router_lost(self, channel: Channel) -> None:
        """The channel's link to its router broke (it reconnects): noted for its agents at
        work, whose pages could reach no one meanwhile."""
        now = self.clock.seconds()
        cut_off = self.page_sockets.lost(channel, self.routes.agents_on(channel))
        lost = [
            ConnectionEvent(agent_id, Kind.ROUTER_LOST, now)
            for agent_id in cut_off
            if (agent := self.pool.get_agent(agent_id)) is not None and agent.is_active
        ]
        if lost and self.events is not None:
            self.events.add(lost)

    def request_statuses(self) -> None:
        for channel in self.channels:
            # A router that ends no answer with an empty packet (Mephisto's): done now.
            unfinished = self.shown.pop(channel, None)
            if unfinished is not None:
                self._push_unshown(channel, unfinished)
            if channel.is_open:
                self.routes.send(channel, Packet(REQUEST_STATUSES, MEPHISTO, {}))

    def bind_agent(self, agent: Agent, channel: Channel) -> None:
        """The agent's packets now go through `channel` (where it last registered)."""
        self.routes.bind(agent, channel)
        self.resumption.claim(agent.agent_id)  # a resumed agent's page reloaded

    # --- dispatch ---

    def handle_packet(self, channel: Channel, packet: Packet) -> Deferred[Handled]:
        """Handle one packet; the Deferred says how (a submission: stored, refused or not
        stored this time). A packet the router journaled (it carries a confirm_id) is
        confirmed to it once that is known."""
        if self.resumption.unclaimed and packet.packet_type != RETURN_STATUSES:
            self._claim(channel, packet.subject_id)
        handler = self.handlers.get(packet.packet_type)
        if handler is None:
            log.debug(
                "ignored a {t} packet from {channel}",
                t=packet.packet_type,
                channel=channel.channel_id,
            )
            return succeed(Handled())
        result: Deferred[None] | None = None
        try:
            result = handler(channel, packet)
        except Exception:
            d: Deferred[None] = fail()
        else:
            d = result if result is not None else succeed(None)

        def failed(failure: Failure) -> Handled:
            if failure.check(SubmissionRefused):  # expected; the handler said why
                return Handled(Outcome.REFUSED, str(failure.value))
            log.failure(
                "handling a {t} packet about {subject} failed",
                failure,
                t=packet.packet_type,
                subject=packet.subject_id,
            )
            return Handled(Outcome.FAILED)

        handled = d.addCallbacks(lambda _: Handled(), failed)
        repeat = result is None or result in self.repeats
        if result is not None:
            self.repeats.discard(result)
        if packet.packet_type in SUBMISSION_KINDS and not repeat:
            handled.addCallback(self._count_submission, packet)
        if packet.confirm_id is not None:
            handled.addCallback(self._confirm, channel, packet)
        return handled

    def _count_submission(self, handled: Handled, packet: Packet) -> Handled:
        kind = SUBMISSION_KINDS[packet.packet_type]
        self.metrics.submission_handled(kind, handled.outcome, packet.subject_id, handled.reason)
        return handled

    def _confirm(self, handled: Handled, channel: Channel, packet: Packet) -> Handled:
        """Tell the router what became of a submission it journaled."""
        data = {"confirm_id": packet.confirm_id, "outcome": handled.outcome}
        if handled.reason:
            data["reason"] = handled.reason
        channel.send(Packet(SUBMISSION_HANDLED, packet.subject_id, data))
        return handled

    # --- registration ---

    def _first_time(self, packet: Packet) -> str | None:
        """The packet's request id if it was never seen before; None for a repeat."""
        request_id = packet.data.get("request_id", packet.subject_id)
        if not isinstance(request_id, str) or not request_id or UNPRINTABLE.search(request_id):
            request_id = packet.subject_id
        if not self.answered_requests.add(request_id):
            log.info("dropped a repeated {t} ({rid})", t=packet.packet_type, rid=request_id)
            return None
        return request_id

    def handle_register_agent(self, channel: Channel, packet: Packet) -> Deferred[None] | None:
        request_id = self._first_time(packet)
        if request_id is None:
            return None
        provider_data = packet.data.get("provider_data")
        if not isinstance(provider_data, dict):
            provider_data = {}
        d = self.pool.register(provider_data)
        return self._answer_registration(d, channel, request_id)

    def handle_submit_onboarding(self, channel: Channel, packet: Packet) -> Deferred[None] | None:
        request_id = self._first_time(packet)
        if request_id is None:
            return None
        onboarding_data = packet.data.get("onboarding_data")
        if not isinstance(onboarding_data, dict):
            onboarding_data = {k: v for k, v in packet.data.items() if k != "request_id"}
        agent_id, key = packet.subject_id, fingerprint(packet)

        def save(worker_id: str | None) -> Deferred[None]:
            return self.store.save_onboarding(agent_id, worker_id, onboarding_data, key)

        agent = self.pool.get_agent(agent_id)
        if agent is None:
            late = self.finished.onboarding_submission(agent_id, save)
            return self._answer_registration(late, channel, request_id)
        # Kept first: the verdict is given on what is committed.
        saved = save(agent.worker_id)

        onboarding_agent = agent

        def judge(_: None) -> Deferred[Registration]:
            return self.pool.submit_onboarding(onboarding_agent, onboarding_data)

        return self._answer_registration(saved.addCallback(judge), channel, request_id)

    def _answer_registration(
        self, d: Deferred[Registration], channel: Channel, request_id: str
    ) -> Deferred[None]:
        def failed(failure: Failure) -> Registration:
            if failure.check(BadRegistration):  # expected: a page's odd provider_data
                log.warn("registration {rid} refused: {why}", rid=request_id, why=failure.value)
            else:
                log.failure("registration {rid} failed", failure, rid=request_id)
            return Registration.refused(None, FailureReason.NO_WORK)

        def answer(registration: Registration) -> None:
            agent = registration.agent
            self.metrics.registration_answered(
                agent.agent_id if agent is not None else None,
                registration.failure_reason,
                registration.reconnected,
                registration.worker_id,
            )
            self._send_details(channel, request_id, registration)
            if agent is not None:
                self.bind_agent(agent, channel)  # its first packets follow the answer
            if agent is not None and registration.reconnected:
                agent.push_status()  # the router may be new, or another one
                if self.events is not None:
                    again = ConnectionEvent(
                        agent.agent_id, Kind.REGISTERED_AGAIN, self.clock.seconds()
                    )
                    self.events.add([again])

        return d.addErrback(failed).addCallback(answer)

    def _send_details(self, channel: Channel, request_id: str, registration: Registration) -> None:
        agent = registration.agent
        data = {
            "request_id": request_id,
            "worker_id": registration.worker_id,
            "agent_id": agent.agent_id if agent is not None else None,
            "init_task_data": registration.init_task_data,
            "failure_reason": registration.failure_reason,
        }
        self.routes.send(channel, Packet(AGENT_DETAILS, request_id, data))

    # --- submissions ---

    def handle_submit_unit(self, channel: Channel, packet: Packet) -> Deferred[None] | None:
        agent_id = packet.subject_id
        agent = self.pool.get_agent(agent_id)
        key = fingerprint(packet)
        if (agent is not None and agent.submitted) or key in self.stored_submissions:
            log.info("dropped a repeated submission of agent {agent_id}", agent_id=agent_id)
            return self._repeat_of(agent_id)
        self.stored_submissions.add(key)

        def save(worker_id: str | None, completes: bool = False) -> Deferred[None]:
            d = self.store.save_unit_submission(agent_id, worker_id, packet.data, key, completes)

            def failed(failure: Failure) -> Failure:
                self.stored_submissions.discard(key)  # a repeat may be stored yet
                if agent is not None:
                    agent.submitted = False
                return failure

            return self.finished.storing(agent_id, d).addErrback(failed)

        if agent is None:
            held = self.finished.unit_submission(channel, agent_id, packet.data, save)
            return self._watched(held, agent_id)
        agent.submitted = True
        # The agent's `completed` commits with its submission, one transaction for both,
        # as long as nothing changes its status meanwhile (then the recorder writes it).
        # Only without files: with none to fetch first, that transaction is issued now,
        # before any later status write of the agent, which then follows it.
        status_then = agent.status
        completes = (
            is_active(status_then) and not agent.is_onboarding and not names_files(packet.data)
        )

        def stored(_: None) -> None:
            if is_active(agent.status):
                if completes and agent.status == status_then:
                    agent.stored_status = Status.COMPLETED
                agent.set_status(Status.COMPLETED)
                if self.on_unit_submitted is not None:
                    self.on_unit_submitted(agent, packet.data)

        return self._watched(save(agent.worker_id, completes).addCallback(stored), agent_id)

    def _repeat_of(self, agent_id: str) -> Deferred[None] | None:
        """A repeated unit submission's answer: its first copy's, once that is saved (or
        not); None (stored before) when no save of the agent's is under way."""
        waiting = self.unit_saves.get(agent_id)
        if waiting is None:
            return None
        answer: Deferred[None] = Deferred()
        waiting.append(answer)
        self.repeats.add(answer)
        return answer

    def _watched(self, saving: Deferred[None], agent_id: str) -> Deferred[None]:
        """`saving` (a copy's save), with the repeats that arrive meanwhile answered as it
        ends: stored, refused or not stored."""
        waiting: list[Deferred[None]] = []
        self.unit_saves[agent_id] = waiting
        return saving.addBoth(self._answer_repeats, agent_id, waiting)

    def _answer_repeats(self, result: Any, agent_id: str, waiting: list[Deferred[None]]) -> Any:
        if self.unit_saves.get(agent_id) is waiting:
            del self.unit_saves[agent_id]
        for answer in waiting:
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(None)
        return result

    def handle_submit_metadata(self, channel: Channel, packet: Packet) -> Deferred[None] | None:
        key = fingerprint(packet)
        if not self.stored_submissions.add(key):
            log.info("dropped repeated metadata of agent {agent_id}", agent_id=packet.subject_id)
            return None
        agent = self.pool.get_agent(packet.subject_id)
        worker_id = agent.worker_id if agent is not None else None
        d = self.store.save_metadata(packet.subject_id, worker_id, packet.data, key)

        def failed(failure: Failure) -> Failure:
            self.stored_submissions.discard(key)
            return failure

        return d.addErrback(failed)

    # --- live updates ---

    def handle_live_update(self, channel: Channel, packet: Packet) -> Deferred[None] | None:
        if holds_nul(packet.data.get("update_id")):  # from any router: architect/nul.py
            log.warn(
                "dropped a live update of agent {agent_id}: a NUL in its update_id",
                agent_id=packet.subject_id,
            )
            return None
        agent = self.pool.get_agent(packet.subject_id)
        if agent is None:
            return self.finished.live_update(packet.subject_id)
        if not agent.receive_live_update(packet.data):
            log.debug(
                "dropped a live update of agent {agent_id} (a repeat, or its history is full)",
                agent_id=agent.agent_id,
            )
        return None

    # --- statuses ---

    def handle_return_statuses(self, channel: Channel, packet: Packet) -> Deferred[None] | None:
        router_statuses = {
            agent_id: status
            for agent_id, status in packet.data.items()
            if isinstance(status, str) and not UNPRINTABLE.search(agent_id)
        }
        if len(router_statuses) < len(packet.data):
            log.warn(
                "return_statuses from {channel}: ignored {n} odd entries (a status that is"
                " not a string, an id with a control character)",
                channel=channel.channel_id,
                n=len(packet.data) - len(router_statuses),
            )
        if self.resumption.unclaimed:
            for agent_id in [a for a in router_statuses if a in self.resumption.unclaimed]:
                self._claim(channel, agent_id)
        on_channel = self.routes.agents_answered_by(channel)
        for agent_id in on_channel:
            agent = self.pool.get_agent(agent_id)
            if agent is None or agent_id not in router_statuses:
                continue
            router_status = router_statuses[agent_id]
            if router_status == agent.status:
                continue
            if router_status == Status.DISCONNECT and agent.is_active:
                log.info("agent {agent_id} disconnected (router)", agent_id=agent_id)
                agent.set_status(Status.DISCONNECT, push=False)
            else:
                agent.push_status()
        shown = self.shown.setdefault(channel, set())
        shown.update(router_statuses)
        if not packet.data:  # the answer's end
            self._push_unshown(channel, self.shown.pop(channel))
        return self._tell_finished(channel, router_statuses)

    def _push_unshown(self, channel: Channel, shown: set[str]) -> None:
        """Agents at work on this channel its router does not know (it restarted): told
        again."""
        for agent_id in self.routes.agents_on(channel):
            agent = self.pool.get_agent(agent_id)
            if agent is not None and agent_id not in shown:
                agent.push_status()

    def _tell_finished(
        self, channel: Channel, router_statuses: dict[str, Any]
    ) -> Deferred[None] | None:
        """Agents a backend made active at the router, and this backend does not hold, are
        finished or gone: the router is told (or their pages would show `in task` forever).

        The router may be behind (it read its statuses before our last push reached it),
        or a backend restarted and cleared the agents of the last run (their units are
        back in the pool). (`none` is the router's own default, never pushed by a
        backend: left alone.)
        """
        told = [
            self.finished.shown_at_work(channel, agent_id, router_status)
            for agent_id, router_status in router_statuses.items()
            if router_status in PUSHED_ACTIVE and self.pool.get_agent(agent_id) is None
        ]
        if not told:
            return None
        return gatherResults(told, consumeErrors=True).addCallback(lambda _: None)

    # --- connection events ---

    def handle_connection_events(self, channel: Channel, packet: Packet) -> None:
        """A router's batch of its agents' connection events (protocol.EVENTS): kept, not
        waited for."""
        batch = from_wire(packet.data)
        if batch.odd:
            log.warn(
                "connection_events from {channel}: left out {n} odd entries",
                channel=channel.channel_id,
                n=batch.odd,
            )
        if batch.dropped:
            log.warn(
                "the router of {channel} dropped {n} connection events (its buffer was full)",
                channel=channel.channel_id,
                n=batch.dropped,
            )
        self.page_sockets.saw(channel, batch.events)
        if self.events is not None and (batch.events or batch.repeats):
            self.events.add(batch.events, batch.repeats)

    # --- errors ---

    def handle_log_error(self, channel: Channel, packet: Packet) -> None:
        """A page's error report (its data is what the page posted, as from Mephisto's
        routers), or a router's version-mismatch warning. Logged cut short: a page may
        post a megabyte."""
        data = packet.data
        if data.get("error_type") == "version-mismatch":
            if "received_version" not in data:  # Mephisto's router says it in `text` only
                log.error("mephisto-task version mismatch: {text}", text=capped(data.get("text")))
                return
            log.error(
                "the browser of {subject} runs mephisto-task {received}, expected {expected};"
                " update the task frontend",
                subject=packet.subject_id,
                received=printable(str(data.get("received_version"))[:100]),
                expected=printable(str(data.get("expected_version"))[:100]),
            )
            return
        agent = self.pool.get_agent(packet.subject_id)
        log.warn(
            "browser error from agent {agent_id} ({agent}): {error}",
            agent_id=packet.subject_id,
            agent=agent,
            error=capped(data),
        )
