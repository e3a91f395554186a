"""AdminService: the admin listener (admin/web.py) on `[admin] listen`, as a Twisted
service of its own (the daemon's child "admin"), apart from the workers' port."""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from architect.admin.parts import DaemonParts
from architect.admin.web import AdminWeb
from architect.endpoints import is_loopback_only
from architect.metrics import Metrics

log = Logger()


@implementer(IStreamServerEndpoint)
class _Noted:
    def __init__(self, endpoint: IStreamServerEndpoint, service: AdminService) -> None:
        self.endpoint = endpoint
        self.service = service

    def listen(self, factory: Any) -> Deferred[IListeningPort]:
        return self.endpoint.listen(factory).addCallback(self.service._listening)


def private_unix(listen: str) -> str:
    """A unix: endpoint made 0600 (its owner alone may connect: the token is not all that
    guards it), unless it names a mode itself; any other endpoint as it is."""
    if listen.startswith("unix:") and ":mode=" not in listen:
        return listen + ":mode=600"
    return listen


class AdminService(MultiService):
    def __init__(
        self, reactor: Any, parts: DaemonParts, metrics: Metrics, listen: str, token: str
    ) -> None:
        super().__init__()
        self.listen = listen
        self.web = AdminWeb(parts, metrics, token)
        self.port: IListeningPort | None = None
        if not token:
            assert is_loopback_only(listen), "config.py refuses this: a token is needed"
        listener = StreamServerEndpointService(
            _Noted(serverFromString(reactor, private_unix(listen)), self), self.web.site()
        )
        listener._raiseSynchronously = True  # a port that cannot be had stops the start
        listener.setName("listener")
        listener.setServiceParent(self)

    @property
    def port_number(self) -> int | None:
        number = getattr(self.port.getHost(), "port", None) if self.port is not None else None
        return number if isinstance(number, int) else None

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        log.info("admin listener (metrics, monitor, controls) on {listen}", listen=self.listen)
        return port

    def stopService(self) -> Deferred[None]:
        self.port = None
        return super().stopService()
