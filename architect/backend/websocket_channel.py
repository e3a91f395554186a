"""WebsocketChannel: the backend reaching a remote router over a WebSocket.

An Autobahn client under a Twisted `ClientService`, which reconnects with
backoff. On every (re)connection it says `alive` as "mephisto", presenting the
token both as `?token=` and as `Authorization: Bearer`, then sends what was
kept while it was away. If no connection could be made for `reconnect_giveup`
seconds it reports a catastrophic loss (and keeps trying).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger

from architect.backend.channel import Channel
from architect.config import BackendConfig
from architect.protocol import (
    ALIVE,
    CONFIRM,
    EXTENSIONS,
    EXTENSIONS_HEADER,
    MAX_PACKET_DEPTH,
    MEPHISTO,
    SUBMISSION_HANDLED,
    CloseCode,
    Packet,
    ProtocolError,
)

log = Logger()

# What the operator should look at when the router closes our socket with its own codes.
_WHAT_TO_CHECK = {
    CloseCode.REFUSED: "check [backend] backend_token against the router's",
    CloseCode.REPLACED: "another backend connection took our place: is a second backend"
    " running for this router?",
}


def default_retry_policy() -> Callable[[int], float]:
    """Quick first retries (a router restart is short), at most 5 s apart."""
    return backoffPolicy(
        initialDelay=0.25, maxDelay=5.0, factor=1.5, jitter=lambda: random.random() * 0.25
    )


def url_with_token(url: str, token: str) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(query)))


class BackendSocket(WebSocketClientProtocol):
    factory: BackendSocketFactory
    extensions: frozenset[str] = frozenset()  # those the router offered: we take them up

    def onConnect(self, response: ConnectionResponse) -> None:
        offered = response.headers.get(EXTENSIONS_HEADER.lower(), "")
        if isinstance(offered, str):
            names = {name.strip() for name in offered.split(",")}
            self.extensions = frozenset(names.intersection(EXTENSIONS))

    @property
    def confirms(self) -> bool:
        return CONFIRM in self.extensions

    def onOpen(self) -> None:
        self.factory.channel._socket_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            packet = Packet.from_frame(payload, isBinary, MAX_PACKET_DEPTH, self.confirms)
        except ProtocolError as e:
            log.warn("dropped a malformed packet from the router: {why}", why=str(e))
            return
        self.factory.channel._socket_message(self, packet)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.channel._socket_closed(self, code, reason)

    def send_packet(self, packet: Packet) -> None:
        self.sendMessage(packet.to_json().encode("utf-8"))


class BackendSocketFactory(WebSocketClientFactory):
    def __init__(
        self, channel: WebsocketChannel, url: str, headers: dict[str, str], reactor: IReactorTime
    ) -> None:
        super().__init__(url, headers=headers, reactor=reactor)
        self.protocol = BackendSocket
        self.channel = channel
        self.setProtocolOptions(autoPingInterval=0)


class WebsocketChannel(Channel):
    def __init__(
        self,
        reactor: IReactorTime,
        url: str,
        token: str = "",
        reconnect_giveup: float = BackendConfig().reconnect_giveup,
        channel_id: str | None = None,
        retry_policy: Callable[[int], float] | None = None,
        endpoint: IStreamClientEndpoint | None = None,
        max_unsent_packets: int = 100_000,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__(channel_id or url)
        self.reactor = reactor
        self.url = url
        self.reconnect_giveup = reconnect_giveup
        self.max_unsent_packets = max_unsent_packets
        self.close_timeout = close_timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.factory = BackendSocketFactory(self, url_with_token(url, token), headers, reactor)
        if endpoint is None:
            endpoint = self._endpoint_for(url)
        self.service = ClientService(
            endpoint,
            self.factory,
            retryPolicy=retry_policy or default_retry_policy(),
            clock=reactor,
        )
        self.socket: BackendSocket | None = None  # set while open
        self.unsent: deque[Packet] = deque()
        self.connections = 0  # how many times it has opened
        self._stopping = False
        self._giveup_timer: IDelayedCall | None = None
        self._closed_waiters: list[Deferred[None]] = []

    def _endpoint_for(self, url: str) -> IStreamClientEndpoint:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if secure else 80)
        endpoint: IStreamClientEndpoint = HostnameEndpoint(cast(Any, self.reactor), host, port)
        if secure:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    # --- Channel ---

    @property
    def is_open(self) -> bool:
        return self.socket is not None

    @property
    def extensions(self) -> frozenset[str]:
        return self.socket.extensions if self.socket is not None else frozenset()

    def open(self) -> None:
        self._stopping = False
        self._start_giveup_timer()
        if not self.service.running:
            self.service.startService()

    def close(self) -> Deferred[None]:
        self._stopping = True
        self._cancel_giveup_timer()
        socket = self.socket
        if socket is None:
            return self._stop_service()
        closed: Deferred[None] = Deferred()
        self._closed_waiters.append(closed)
        closed.addTimeout(self.close_timeout, self.reactor, onTimeoutCancel=lambda *_: None)
        socket.sendClose(code=1000, reason="backend stopping")
        return closed.addCallback(lambda _: self._stop_service())

    def _stop_service(self) -> Deferred[None]:
        if self.service.running:
            return self.service.stopService()
        return succeed(None)

    def send(self, packet: Packet) -> None:
        if self.socket is not None:
            self.socket.send_packet(packet)
            return
        if len(self.unsent) >= self.max_unsent_packets:
            dropped = self.unsent.popleft()
            log.warn(
                "router away and {limit} packets kept: dropped the oldest ({t})",
                limit=self.max_unsent_packets,
                t=dropped.packet_type,
            )
        self.unsent.append(packet)

    # --- the giveup timer ---

    def _start_giveup_timer(self) -> None:
        if self._giveup_timer is None or not self._giveup_timer.active():
            self._giveup_timer = self.reactor.callLater(self.reconnect_giveup, self._give_up)

    def _cancel_giveup_timer(self) -> None:
        if self._giveup_timer is not None and self._giveup_timer.active():
            self._giveup_timer.cancel()
        self._giveup_timer = None

    def _give_up(self) -> None:
        self._giveup_timer = None
        log.critical(
            "no connection to the router at {url} for {seconds:g} s; still trying",
            url=self.url,
            seconds=self.reconnect_giveup,
        )
        self.on_catastrophic_loss(self)

    # --- from the socket ---

    def _socket_opened(self, socket: BackendSocket) -> None:
        if self._stopping:
            socket.sendClose(code=1000, reason="backend stopping")
            return
        self._cancel_giveup_timer()
        self.connections += 1
        log.info("connected to the router at {url}", url=self.url)
        # Taking up the extensions the router offered (protocol.CONFIRM, RESUME).
        taken = sorted(socket.extensions)
        socket.send_packet(Packet(ALIVE, MEPHISTO, {"extensions": taken} if taken else {}))
        while self.unsent:
            packet = self.unsent.popleft()
            if packet.packet_type == SUBMISSION_HANDLED and not socket.confirms:
                continue  # for a router that offers no confirmation: it would not know it
            socket.send_packet(packet)
        self.socket = socket
        self.on_open(self)

    def _socket_message(self, socket: BackendSocket, packet: Packet) -> None:
        if socket is self.socket:
            self.on_message(self, packet)

    def _socket_closed(self, socket: BackendSocket, code: int | None, reason: str | None) -> None:
        was_open = socket is self.socket
        if was_open:
            self.socket = None
        if self._stopping:
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)
            return
        if code in _WHAT_TO_CHECK:
            log.error(
                "the router at {url} closed our connection ({reason}); {advice}",
                url=self.url,
                reason=reason,
                advice=_WHAT_TO_CHECK[code],
            )
        elif was_open:
            log.warn("lost the router at {url} ({code}): reconnecting", url=self.url, code=code)
        if was_open:
            self.on_lost(self)
        else:
            log.info(
                "could not connect to the router at {url}: {reason}", url=self.url, reason=reason
            )
        self._start_giveup_timer()
