"""HTTP without sockets: treq's client over an in-memory connection to a twisted.web Site.

The way `treq.testing.StubTreq` works (Twisted's HTTP client and server joined by
`twisted.test.iosim`'s in-memory transports), with two differences the router's tests
need:

- it serves a whole `Site`, not a bare resource: the router's body limit lives in its
  Site's request class (`RouterWeb.site()`), which StubTreq's own Site would not use;
- the client's address is the test's choice (StubTreq's is always 127.0.0.1), so the
  loopback rules are tested from both sides.

No socket is opened. What the two sides write is delivered by `flush()`; `reply(d)`
flushes until the reply to a request is there, giving the reactor a few turns for what
twisted.web does on it (serving a file), and fails the test if no reply comes. A
request waiting on something else (the router's backend, say) stays unanswered until
the test provides it.
"""

from __future__ import annotations

import json
from http.cookiejar import CookieJar
from typing import Any

import attrs
import treq
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IConsumer, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.web.client import URI, Agent, CookieAgent
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IAgentEndpointFactory, IBodyProducer, IResponse
from twisted.web.server import Site
from zope.interface import implementer

reactor: Any = _reactor

LOOPBACK = "127.0.0.1"
ELSEWHERE = "203.0.113.7"  # TEST-NET-3: an address that is not loopback
SERVER = IPv4Address("TCP", "127.0.0.1", 8080)


@implementer(IBodyProducer)
class Body:
    """A request body written at once, in `piece`-sized writes; `chunked`: with no
    Content-Length (sent with chunked transfer encoding)."""

    def __init__(self, data: bytes, chunked: bool = False, piece: int = 0) -> None:
        self.data = data
        self.piece = piece or max(len(data), 1)
        self.length = UNKNOWN_LENGTH if chunked else len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        for start in range(0, len(self.data), self.piece):
            consumer.write(self.data[start : start + self.piece])
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgentEndpointFactory)
class _Endpoints:
    def __init__(self, reactor: MemoryReactorClock) -> None:
        self.reactor = reactor

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        return TCP4ClientEndpoint(self.reactor, LOOPBACK, uri.port)


@implementer(IAgent)
class _SiteAgent:
    """An agent whose every connection is an in-memory one to `site`, from `client`."""

    def __init__(self, site: Site, client: IPv4Address) -> None:
        self.site = site
        self.client = client
        self.reactor = MemoryReactorClock()
        self.agent = Agent.usingEndpointFactory(self.reactor, _Endpoints(self.reactor))
        self.pumps: list[iosim.IOPump] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[IResponse]:
        response = self.agent.request(method, uri, headers, bodyProducer)
        # The agent asked the memory reactor for a TCP connection: give it one to the site.
        _, _, factory, _, _ = self.reactor.tcpClients.pop()
        server = self.site.buildProtocol(self.client)
        client = factory.buildProtocol(SERVER)
        self.pumps.append(
            iosim.connect(
                server,
                iosim.FakeTransport(
                    server, isServer=True, hostAddress=SERVER, peerAddress=self.client
                ),
                client,
                iosim.FakeTransport(
                    client, isServer=False, hostAddress=self.client, peerAddress=SERVER
                ),
            )
        )
        return response

    def flush(self) -> None:
        """Deliver what both sides wrote, until neither has more to say."""
        for pump in self.pumps:
            pump.flush()
        self.pumps = [
            p for p in self.pumps if not (p.clientIO.disconnected and p.serverIO.disconnected)
        ]


@attrs.frozen
class Reply:
    code: int
    headers: Headers
    body: bytes

    @property
    def content_type(self) -> str | None:
        values = self.headers.getRawHeaders("content-type")
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class MemoryHTTP:
    """A client of `site` at `client_host` (loopback by default)."""

    def __init__(self, site: Site, client_host: str = LOOPBACK) -> None:
        self.agent = _SiteAgent(site, IPv4Address("TCP", client_host, 40000))
        # One browser: it keeps the cookies it is given and sends them back.
        self.browser = CookieAgent(self.agent, CookieJar())

    def send(
        self,
        method: str,
        path: str,
        body: bytes | IBodyProducer | None = None,
        headers: dict[str, str] | None = None,
    ) -> Deferred[Reply]:
        """Send a request; its reply comes with `reply` (or at a `flush`)."""
        producer = Body(body) if isinstance(body, bytes) else body
        sent = self.browser.request(
            method.encode("ascii"),
            f"http://{SERVER.host}:{SERVER.port}{path}".encode("ascii"),
            Headers({k: [v] for k, v in (headers or {}).items()}),
            producer,
        )

        async def whole() -> Reply:
            response = await sent
            return Reply(response.code, response.headers, await treq.content(response))

        # `called` only once the whole reply is there (the agent's Deferred fires earlier).
        return Deferred.fromCoroutine(whole())

    def flush(self) -> None:
        """Deliver what both sides have written so far."""
        self.agent.flush()

    async def reply(self, sent: Deferred[Reply], turns: int = 50) -> Reply:
        """The reply to a request sent: what the server writes at once is delivered at
        once; what it writes later from the reactor (twisted.web serves a file a piece
        per reactor turn) within `turns` turns. Fails the test if there is none."""
        replies: list[Reply | Failure] = []
        sent.addBoth(replies.append)
        for _ in range(turns):
            self.flush()
            if replies:
                break
            await deferLater(reactor, 0)
        assert replies, "no reply"
        [outcome] = replies
        if isinstance(outcome, Failure):
            outcome.raiseException()
        assert isinstance(outcome, Reply)
        return outcome

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return await self.reply(self.send("GET", path, headers=headers))

    def send_post(
        self,
        path: str,
        body: bytes | IBodyProducer,
        content_type: str = "application/json",
    ) -> Deferred[Reply]:
        return self.send("POST", path, body, {"Content-Type": content_type})

    async def post(
        self, path: str, body: bytes | IBodyProducer, content_type: str = "application/json"
    ) -> Reply:
        return await self.reply(self.send_post(path, body, content_type))

    async def post_json(self, path: str, value: Any) -> Reply:
        return await self.post(path, json.dumps(value).encode())


class _Recorder(Protocol):
    """The client's end of a raw connection: what it received, whether it was closed."""

    def __init__(self) -> None:
        self.received = b""
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True


class RawHTTP:
    """One in-memory connection to `site` over which the test writes bytes of its own."""

    def __init__(self, site: Site, client_host: str = LOOPBACK) -> None:
        address = IPv4Address("TCP", client_host, 40001)
        self.server = site.buildProtocol(address)
        self.client = _Recorder()
        self.pump = iosim.connect(
            self.server,
            iosim.FakeTransport(
                self.server, isServer=True, hostAddress=SERVER, peerAddress=address
            ),
            self.client,
            iosim.FakeTransport(
                self.client, isServer=False, hostAddress=address, peerAddress=SERVER
            ),
        )

    def write(self, data: bytes) -> None:
        """Send bytes (unless the server closed the connection) and deliver what follows."""
        if not self.closed:
            self.pump.clientIO.write(data)
        self.pump.flush()

    @property
    def received(self) -> bytes:
        return self.client.received

    @property
    def closed(self) -> bool:
        """The server closed the connection (and the client saw it)."""
        return self.client.closed

    async def settle(self, turns: int = 20) -> None:
        """Give the server reactor turns for what it writes from there (a file, a piece
        a turn), delivering as it goes."""
        for _ in range(turns):
            self.pump.flush()
            await deferLater(reactor, 0)
        self.pump.flush()

    def _answer(self) -> tuple[bytes, dict[bytes, bytes], bytes]:
        """The first answer received: its status line, headers (lowercase names), body
        (as long as its Content-Length says)."""
        head, _, rest = self.received.partition(b"\r\n\r\n")
        status, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        assert b"content-length" in headers, head
        return status, headers, rest[: int(headers[b"content-length"])]

    def status(self) -> int:
        return int(self._answer()[0].split(b" ")[1])

    def headers(self) -> dict[bytes, bytes]:
        return self._answer()[1]

    def body(self) -> bytes:
        return self._answer()[2]

    def json(self) -> Any:
        return json.loads(self.body())
