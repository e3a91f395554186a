"""The embedded mode's link: the backend and the router in one process, no socket between.

The only module that knows both sides: the link, and the backend's way to the
router's upload folder (`SharedUploads`). `InProcessChannel` is a backend `Channel`
whose other end is a `RouterSide` (the router hub's face to its backend); the hub
sees it as a `ConfirmingLink`, so it answers a worker's submission only once the
backend has committed it. There is no JSON here, but the semantics of a socket:
packets are copied at the boundary so the two sides never share a mutable dict,
and each is delivered in a later reactor turn, in order, so neither side is
re-entered while it is still handling a packet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from architect.backend.channel import Channel
from architect.backend.files import FileFetchError
from architect.copies import json_copy
from architect.protocol import CloseCode, Handled, Outcome, Packet
from architect.router.uploads import UploadFolder

log = Logger()


def _as_handled(outcome: object) -> Handled:
    """The backend's handling of a packet (ClientIOHandler.handle_packet); anything else,
    such as a failure no handler caught, is a failure to store."""
    return outcome if isinstance(outcome, Handled) else Handled(Outcome.FAILED)


def copy_packet(packet: Packet) -> Packet:
    """The packet with a copy of its data: every field named (attrs.evolve, which looks
    the fields up each time, was a visible part of a registration's cost)."""
    return Packet(
        packet.packet_type,
        packet.subject_id,
        json_copy(packet.data),
        packet.client_timestamp,
        packet.router_incoming_timestamp,
        packet.router_outgoing_timestamp,
        packet.server_timestamp,
        confirm_id=packet.confirm_id,
    )


class RouterSide(Protocol):
    """What the in-process channel needs of the router (a `RouterHub` is one)."""

    def backend_connected(
        self, link: _HubSideLink, confirms: bool = ..., events: bool = ...
    ) -> None: ...

    def link_packet(self, link: _HubSideLink, packet: Packet) -> None: ...

    def link_lost(self, link: _HubSideLink) -> None: ...


class _HubSideLink:
    """What the hub sees of an in-process channel: a Link."""

    def __init__(self, channel: InProcessChannel) -> None:
        self.channel = channel

    def send_packet(self, packet: Packet) -> None:
        self.channel._router_sent(self, copy_packet(packet))

    def send_and_confirm(self, packet: Packet) -> Deferred[Handled]:
        """Deliver, and say once the backend has handled it (a submission: committed)."""
        handled: Deferred[Handled] = Deferred()
        self.channel._router_sent(self, copy_packet(packet), handled)
        return handled

    def close(self, code: int) -> None:
        self.channel._router_closed(self, code)

    def __repr__(self) -> str:
        return f"<in-process link of {self.channel.channel_id}>"


class InProcessChannel(Channel):
    """The backend and a RouterHub in one process, linked without a socket."""

    def __init__(self, hub: RouterSide, clock: IReactorTime, channel_id: str = "embedded") -> None:
        super().__init__(channel_id)
        self.hub = hub
        self.clock = clock
        self.link: _HubSideLink | None = None
        self._unsent: deque[Packet] = deque()
        self._deliveries: deque[Callable[[], None]] = deque()
        self._drain_call: IDelayedCall | None = None

    @property
    def is_open(self) -> bool:
        return self.link is not None

    def open(self) -> None:
        if self.link is not None:
            return
        link = self.link = _HubSideLink(self)
        # Trusted, the hub being in our own process; it takes the events extension.
        self.hub.backend_connected(link, events=True)
        while self._unsent and self.link is link:
            self._later(partial(self._deliver_to_router, link, self._unsent.popleft()))
        self.on_open(self)

    def close(self) -> Deferred[None]:
        link, self.link = self.link, None
        if link is not None:
            self.hub.link_lost(link)
        return succeed(None)

    def send(self, packet: Packet) -> None:
        if self.link is None:
            self._unsent.append(copy_packet(packet))
            return
        self._later(partial(self._deliver_to_router, self.link, copy_packet(packet)))

    # --- delivery, one packet per call, in order, in a later reactor turn ---

    def _later(self, delivery: Callable[[], None]) -> None:
        self._deliveries.append(delivery)
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        self._drain_call = None
        while self._deliveries:
            self._deliveries.popleft()()

    def _deliver_to_router(self, link: _HubSideLink, packet: Packet) -> None:
        if link is self.link:
            self.hub.link_packet(link, packet)
        else:
            self._unsent.append(packet)  # closed since: kept for the next open

    def _deliver_to_backend(
        self, link: _HubSideLink, packet: Packet, handled: Deferred[Handled] | None = None
    ) -> None:
        if link is not self.link:
            if handled is not None:
                handled.callback(Handled(Outcome.FAILED))
            return
        result = self.on_message(self, packet)
        if handled is not None:
            if isinstance(result, Deferred):
                result.addBoth(lambda outcome: handled.callback(_as_handled(outcome)))
            else:
                handled.callback(Handled())

    # --- from the hub's side ---

    def _router_sent(
        self, link: _HubSideLink, packet: Packet, handled: Deferred[Handled] | None = None
    ) -> None:
        self._later(partial(self._deliver_to_backend, link, packet, handled))

    def _router_closed(self, link: _HubSideLink, code: int) -> None:
        if link is not self.link:
            return
        # The hub gave our place to another backend; there is nothing to reconnect to.
        log.error(
            "the router closed the in-process backend link: {reason}",
            reason=CloseCode.REASONS.get(code, code),
        )
        self.link = None
        self.hub.link_lost(link)
        self.on_catastrophic_loss(self)


class SharedUploads:
    """The embedded backend's way to the uploads: the router's own upload folder, in
    this process. Only the submitting agent's files are found."""

    def __init__(self, reactor: Any, folder: UploadFolder) -> None:
        self.reactor = reactor
        self.folder = folder

    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        path = self.folder.path_of(filename, agent_id)
        if path is None:
            return fail(FileFetchError(f"{filename!r} is no upload of agent {agent_id}"))

        def read() -> bytes:
            try:
                return path.read_bytes()
            except OSError as e:
                raise FileFetchError(f"cannot read {path}: {e.strerror}") from None

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), read)

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        self.folder.discard(filename, agent_id)
        return succeed(None)
