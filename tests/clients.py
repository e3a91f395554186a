"""Real-socket test clients: a WebSocket peer that collects packets, a raw TCP connection,
and a router on a free port."""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from architect.config import RouterConfig
from architect.protocol import MAX_PACKET_DEPTH, UPDATE_STATUS, Packet
from architect.router.hub import RouterHub
from architect.router.web import RouterWeb

reactor: Any = _reactor
TIMEOUT = 5.0  # seconds a test waits for something that should come at once


async def wait_for(
    condition: Callable[[], object], what: str = "a condition", deadline: float = TIMEOUT
) -> None:
    """Wait, in small real steps, for something the code under test reaches on its own.

    `condition` may be a plain function or an `async` one (e.g. a database query)."""
    end = time.monotonic() + deadline
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await deferLater(reactor, 0.01)


class PacketClient(WebSocketClientProtocol):
    """One WebSocket peer (a page or a backend): sends packets, and keeps what it receives twice:
    queued, for `next` to take in order, and in `history`, never taken, for polling."""

    factory: PacketClientFactory

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        packet = Packet.from_json(payload, MAX_PACKET_DEPTH)
        self.factory.history.append(packet)
        self.factory.received.put(packet)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.close_code = code
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"socket refused: {code} {reason}"))
        self.factory.closed.callback(code)

    def send(self, packet_type: str, subject_id: str, data: dict[str, Any] | None = None) -> None:
        packet = {
            "packet_type": packet_type,
            "subject_id": subject_id,
            "data": data or {},
            "client_timestamp": time.time(),
        }
        self.sendMessage(json.dumps(packet).encode())

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        self.sendMessage(payload, isBinary=binary)

    @property
    def received(self) -> DeferredQueue[Packet]:
        return self.factory.received

    @property
    def history(self) -> list[Packet]:
        """Every packet received so far, in order (`next` does not take from it)."""
        return self.factory.history

    @property
    def closed(self) -> Deferred[int | None]:
        return self.factory.closed

    @property
    def has_closed(self) -> bool:
        """Whether the socket has closed (autobahn's own `is_closed` is a Deferred it resolves)."""
        return self.factory.closed.called

    async def next(self, packet_type: str | None = None, timeout: float = TIMEOUT) -> Packet:
        """The next packet (of this type, skipping others)."""
        while True:
            d = self.received.get()
            d.addTimeout(timeout, reactor)
            packet: Packet = await d
            if packet_type is None or packet.packet_type == packet_type:
                return packet

    def pending(self) -> list[Packet]:
        return list(self.received.pending)

    def of_type(self, packet_type: str) -> list[Packet]:
        return [p for p in self.history if p.packet_type == packet_type]

    def statuses(self) -> list[str]:
        """The statuses pushed to this socket so far, in order."""
        return [p.data["status"] for p in self.of_type(UPDATE_STATUS)]

    async def close(self, timeout: float = TIMEOUT) -> None:
        """Close the socket and wait until it is closed; nothing to do if it already is."""
        if not self.has_closed:
            self.sendClose()
            await wait_for(lambda: self.has_closed, "the socket to close", timeout)


class PacketClientFactory(WebSocketClientFactory):
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(url, headers=headers or {})
        self.protocol = PacketClient
        self.opened: Deferred[PacketClient] = Deferred()
        self.closed: Deferred[int | None] = Deferred()
        self.received: DeferredQueue[Packet] = DeferredQueue()
        self.history: list[Packet] = []
        self.close_code: int | None = None


async def open_socket(
    port: int, query: str = "", headers: dict[str, str] | None = None
) -> PacketClient:
    factory = PacketClientFactory(f"ws://127.0.0.1:{port}/{query}", headers)
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    opened = factory.opened
    opened.addTimeout(TIMEOUT, reactor)
    return await opened


class Browser:
    """One browser: its cookies go with every request and socket handshake it makes, as a
    real browser's do (the router binds an agent to the browser that registered it)."""

    def __init__(self, pool: HTTPConnectionPool | None = None) -> None:
        self.cookies = IndexableCookieJar()
        self.http = HTTPClient(Agent(reactor, pool=pool), cookiejar=self.cookies)

    def cookie_header(self) -> dict[str, str]:
        pairs = [f"{cookie.name}={cookie.value}" for cookie in self.cookies]
        return {"Cookie": "; ".join(pairs)} if pairs else {}

    async def post_json(self, url: str, body: Any) -> tuple[int, Any]:
        """POST a JSON body (or bytes as they are): (status code, the answer's JSON)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await self.http.post(
            url, data=raw, headers=Headers({"Content-Type": ["application/json"]})
        )
        return response.code, json.loads(await response.text())

    async def open_socket(
        self, port: int, query: str = "", headers: dict[str, str] | None = None
    ) -> PacketClient:
        return await open_socket(port, query, {**self.cookie_header(), **(headers or {})})


class Browsers:
    """Simulated workers' browsers: one per worker name, and each agent's is the one that
    registered it (`registered`); the router refuses any other browser for an agent."""

    def __init__(self, pool: HTTPConnectionPool | None = None) -> None:
        self.pool = pool
        self.by_worker: dict[str, Browser] = {}
        self.by_agent: dict[str, Browser] = {}

    def of_worker(self, worker: str) -> Browser:
        return self.by_worker.setdefault(worker, Browser(self.pool))

    def of_agent(self, agent_id: str) -> Browser:
        """The browser that registered the agent; a stranger's for an agent never seen."""
        return self.by_agent.get(agent_id) or Browser(self.pool)

    def registered(self, answer: dict[str, Any], browser: Browser) -> None:
        """An `agent_details` answer's data reached `browser`: the agent is its own."""
        if answer.get("agent_id"):
            self.by_agent[answer["agent_id"]] = browser


class RawConnection(Protocol):
    """A TCP client that writes what it is told and keeps every byte it receives: for what
    an HTTP client would not do (headers a byte at a time) or would hide (the raw answer)."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)

    @property
    def has_closed(self) -> bool:
        return self.closed.called

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def ask(self, path: str) -> None:
        """Send a GET of `path` on this connection (HTTP/1.1: it stays open)."""
        self.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    async def is_alive(self) -> None:
        """GET /is_alive on this connection, and wait for its answer."""
        answered = self.received.count(b'"Alive!"')
        self.ask("/is_alive")
        await wait_for(
            lambda: self.received.count(b'"Alive!"') > answered or self.has_closed,
            "the answer to /is_alive",
        )
        assert self.received.count(b'"Alive!"') > answered, self.received


async def open_raw(port: int, source: str = "127.0.0.1") -> RawConnection:
    """A raw TCP connection to 127.0.0.1:`port` from the loopback address `source`."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=(source, 0))
    return await connectProtocol(endpoint, RawConnection())


@contextmanager
def running_router(config: RouterConfig) -> Iterator[tuple[RouterHub, int]]:
    """Our router's real Site on 127.0.0.1 and a free port."""
    hub = RouterHub(reactor, config)
    listener = reactor.listenTCP(0, RouterWeb(hub, config).site(), interface="127.0.0.1")
    try:
        yield hub, listener.getHost().port
    finally:
        listener.stopListening()
        hub.stop()
