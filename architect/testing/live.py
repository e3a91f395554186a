"""A simulated page's WebSocket: Autobahn's client, handing what happens to its owner.

The socket itself decides nothing: `SimulatedWorker` (worker.py) writes `alive`,
heartbeats and live updates through it, and takes each packet, opening and close.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.ssl import optionsForClientTLS


class SocketOwner(Protocol):
    """Who hears what happens on a page socket (the simulated worker)."""

    def socket_opened(self, socket: PageSocket) -> None: ...

    def packet_received(self, socket: PageSocket, packet: dict[str, Any]) -> None: ...

    def socket_closed(self, socket: PageSocket, code: int | None, reason: str | None) -> None: ...


class PageSocket(WebSocketClientProtocol):
    """One WebSocket connection of a page."""

    factory: PageSocketFactory

    def onOpen(self) -> None:
        self.factory.owner.socket_opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            return  # the router never sends binary frames; a page ignores them
        try:
            packet = json.loads(payload)
        except ValueError:
            return
        if isinstance(packet, dict):
            self.factory.owner.packet_received(self, packet)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.owner.socket_closed(self, code, reason)

    def write(self, packet: dict[str, Any]) -> bool:
        """Send one packet; False if the connection is gone."""
        if self.transport is None or self.state != self.STATE_OPEN:
            return False
        self.sendMessage(json.dumps(packet).encode())
        return True

    def drop(self) -> None:
        """End the connection at once, with no closing handshake: a network lost."""
        if self.transport is not None:
            cast(ITCPTransport, self.transport).abortConnection()  # a TCP connection's


class PageSocketFactory(WebSocketClientFactory):
    def __init__(
        self, owner: SocketOwner, url: str, headers: dict[str, str], handshake_timeout: float
    ) -> None:
        super().__init__(url, headers=headers)
        self.protocol = PageSocket
        self.owner = owner
        # A loaded machine may take a while to answer the handshake: as long as any wait.
        self.setProtocolOptions(openHandshakeTimeout=handshake_timeout, closeHandshakeTimeout=2)


def socket_url(page_url: str) -> str:
    """The router's WebSocket for a page at `page_url`: ws(s)://host:port/."""
    parts = urlsplit(page_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}/"


def open_page_socket(
    reactor: Any,
    owner: SocketOwner,
    page_url: str,
    headers: dict[str, str],
    handshake_timeout: float,
) -> Deferred[Any]:
    """Connect a page socket to the router of `page_url`; fires once the TCP (and TLS)
    connection is made: the owner hears `socket_opened` after the handshake."""
    parts = urlsplit(page_url)
    secure = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if secure else 80)
    factory = PageSocketFactory(owner, socket_url(page_url), headers, handshake_timeout)
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=handshake_timeout)
    if secure:
        endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    connecting: Deferred[Any] = endpoint.connect(factory)
    return connecting
