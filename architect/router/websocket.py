"""Autobahn server protocol: text frames <-> Packets <-> the hub."""

from __future__ import annotations

from ipaddress import ip_address
from typing import cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionRequest
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from architect.protocol import (
    EXTENSIONS,
    EXTENSIONS_HEADER,
    MAX_JSON_DEPTH,
    MAX_PACKET_DEPTH,
    CloseCode,
    Packet,
    ProtocolError,
)
from architect.router.connections import TimelyHeaders
from architect.router.hub import RouterHub
from architect.router.sessions import session_in
from architect.router.turn_writes import TurnWrites

log = Logger()


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def is_loopback(host: str) -> bool:
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class RouterSocket(WebSocketServerProtocol):
    """One socket: a browser speaking for one agent, or the backend."""

    factory: RouterSocketFactory
    token: str | None = None
    from_loopback = False
    origin: str | None = None  # a browser's handshake names the page's origin
    session: str | None = None  # and carries its session cookie (router/sessions.py)

    # Autobahn formats the arguments of a debug line (coloured names, through click) for
    # every read and every frame sent, logged or not: 2 % of the router's CPU under
    # registration load. The same work, without the line:

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.transport is None:
            self.factory.turn_writes.send(self.transport)  # what is held goes first
            super().sendData(data, sync, chopsize)  # queued sends: autobahn's own way
            return
        self.factory.turn_writes.write(self.transport, data)  # at the turn's end: turn_writes.py
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)
        if getattr(self, "logOctets", False):  # Autobahn sets it from the factory's options
            self.logTxOctets(data, False)

    def _closeConnection(self, abort: bool = False) -> None:
        self.factory.turn_writes.send(self.transport)  # the close frame, before the close
        super()._closeConnection(abort)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.turn_writes.held.pop(self.transport, None)  # nowhere to go now
        super().connectionLost(reason)

    def onConnect(self, request: ConnectionRequest) -> tuple[None, dict[str, str]] | None:
        tokens = request.params.get("token") or []
        self.token = tokens[0] if tokens else bearer_token(request.headers.get("authorization"))
        peer = self.transport.getPeer() if self.transport is not None else None
        self.from_loopback = is_loopback(getattr(peer, "host", ""))
        self.origin = request.headers.get("origin")
        self.session = session_in(request.headers.get("cookie"))
        if self.factory.hub.journal is not None and self.origin is None:
            # Offered to a backend-to-be (no browser page): the extensions, which a backend
            # takes up in its alive (protocol.CONFIRM, RESUME). Headers it does not know
            # are nothing to any other client.
            return None, {EXTENSIONS_HEADER: ", ".join(EXTENSIONS)}
        return None

    def onOpen(self) -> None:
        self._shed_the_handshake()
        self.factory.hub.link_opened(self)

    def _shed_the_handshake(self) -> None:
        """Let go of what only the opening handshake needed: an idle socket is kept for
        hours, 10,000s of them.

        - The HTTP channel that took the upgrade request stays the TCP transport's
          registered producer (Autobahn takes the transport over, not that), and with
          it the unfinished upgrade request: about half of an idle socket's memory.
          Nothing of it is used once the socket is open.
          Its header deadline's timer (connections.TimelyHeaders) would hold it too.
        - Autobahn keeps the handshake's raw text and parsed headers.
        """
        transport = self.transport
        channel = getattr(transport, "producer", None)
        if isinstance(channel, TimelyHeaders):
            channel.drop_deadline()
        if isinstance(channel, HTTPChannel):
            cast(IConsumer, transport).unregisterProducer()
        self.http_headers = {}
        self.http_request_data = b""
        self.http_response_data = ""

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        # (A browser's packets hold its own data; the backend's carry it further down.)
        depth = MAX_PACKET_DEPTH if self is self.factory.hub.backend else MAX_JSON_DEPTH
        try:
            packet = Packet.from_frame(payload, isBinary, depth)
        except ProtocolError as e:
            self.factory.hub.floods.warn(
                "malformed packet", "dropped a malformed packet: {why}", why=str(e)[:200]
            )
            return
        self.factory.hub.link_packet(
            self,
            packet,
            token=self.token,
            from_loopback=self.from_loopback,
            origin=self.origin,
            session=self.session,
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # A close the router began is told by the code it sent (1012 at a restart, 4003,
        # ...), whatever the page answered. Else Autobahn's code is the page's (1006
        # without a close frame); None: a close frame without a code, which RFC 6455
        # calls 1005.
        # (Autobahn sets both once the socket is open: a socket lost earlier has neither.)
        mine = getattr(self, "localCloseCode", None)
        if getattr(self, "closedByMe", False) and mine is not None:
            code = mine
        elif code is None and wasClean:
            code = CloseCode.NO_STATUS
        self.factory.hub.link_lost(self, code)

    # --- Link ---

    def send_packet(self, packet: Packet) -> None:
        if self.state != self.STATE_OPEN:
            log.info("socket closing: dropped a {t} packet", t=packet.packet_type)
            return
        self.sendMessage(packet.to_bytes())

    def close(self, code: int) -> None:
        # sendCloseFrame: sendClose refuses the protocol's own codes (1012, at a restart).
        reason = CloseCode.REASONS.get(code, "closed").encode("utf-8")[:123]
        self.sendCloseFrame(code=code, reasonUtf8=reason, isReply=False)


class RouterSocketFactory(WebSocketServerFactory):
    def __init__(self, hub: RouterHub, max_message_bytes: int) -> None:
        super().__init__()
        self.protocol = RouterSocket
        self.hub = hub
        self.turn_writes = TurnWrites(hub.busy)
        self.setProtocolOptions(
            maxMessagePayloadSize=max_message_bytes,
            maxFramePayloadSize=max_message_bytes,
            autoPingInterval=0,
            failByDrop=False,  # oversized or broken frames get a close frame with a reason
        )
