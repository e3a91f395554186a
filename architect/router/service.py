"""RouterService: the router's HTTP + WebSocket site on its endpoint, as a Twisted service.

Listening is Twisted's own `StreamServerEndpointService` (its child "listener"): it
listens in `privilegedStartService`, before twistd sheds privileges, so a low port
works under systemd, and a failure to listen is raised there (`CannotListenError`).
Stopping the service stops listening and the hub's timers. The site listens behind
`ConnectionCaps` (`[router] max_connections`, `max_connections_per_address`).
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.server import Site
from zope.interface import implementer

from architect.router.connections import ConnectionCaps
from architect.router.hub import RouterHub

log = Logger()


@implementer(IStreamServerEndpoint)
class _NotedEndpoint:
    """An endpoint that tells who listens where, once it listens."""

    def __init__(self, endpoint: IStreamServerEndpoint, on_port: Any) -> None:
        self.endpoint = endpoint
        self.on_port = on_port

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        return self.endpoint.listen(factory).addCallback(self.on_port)


class RouterService(MultiService):
    def __init__(self, reactor: Any, hub: RouterHub, site: Site, listen: str) -> None:
        super().__init__()
        self.hub = hub
        self.listen = listen
        self.port: IListeningPort | None = None
        self.url: str | None = None
        endpoint = _NotedEndpoint(serverFromString(reactor, listen), self._listening)
        config = hub.config
        caps = ConnectionCaps(
            site, hub.clock, config.max_connections, config.max_connections_per_address
        )
        listener = StreamServerEndpointService(endpoint, caps)
        listener._raiseSynchronously = True  # a port that cannot be had stops the start
        listener.setName("listener")
        listener.setServiceParent(self)

    @property
    def port_number(self) -> int | None:
        """The TCP port listened on (useful with `tcp:0`), once listening."""
        address = self.port.getHost() if self.port is not None else None
        number = getattr(address, "port", None)
        return number if isinstance(number, int) else None

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        address = port.getHost()
        host, number = getattr(address, "host", None), getattr(address, "port", None)
        if host is None or number is None:
            log.info("router listening on {listen}", listen=self.listen)
            return port
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        scheme = "https" if self.listen.startswith("ssl:") else "http"
        self.url = f"{scheme}://{shown}:{number}/"
        log.info("router listening on {url}", url=self.url)
        return port

    def stopService(self) -> Deferred[None]:
        self.hub.stop()
        self.port = None
        return super().stopService()
