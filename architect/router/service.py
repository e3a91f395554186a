"""RouterService: listens on the configured endpoint, says where, and stops the hub's timers."""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.server import Site

from architect.router.hub import RouterHub

log = Logger()


class RouterService(Service):
    def __init__(self, reactor: Any, hub: RouterHub, site: Site, listen: str) -> None:
        self.reactor = reactor
        self.hub = hub
        self.site = site
        self.listen = listen
        self.port: IListeningPort | None = None
        self.url: str | None = None

    def privilegedStartService(self) -> None:
        # twistd calls this before shedding privileges, so a low port works under systemd.
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        super().startService()
        if self.port is None:  # started without privilegedStartService (tests, embedding)
            self._listen()

    def _listen(self) -> None:
        failures: list[Exception] = []
        listening = serverFromString(self.reactor, self.listen).listen(self.site)
        listening.addCallbacks(self._listening, lambda f: failures.append(f.value))
        if failures:
            sys.stderr.write(f"architect: cannot listen on {self.listen}: {failures[0]}\n")
            raise SystemExit(1)

    @property
    def port_number(self) -> int | None:
        """The TCP port listened on (useful with `tcp:0`), once listening."""
        address = self.port.getHost() if self.port is not None else None
        number = getattr(address, "port", None)
        return number if isinstance(number, int) else None

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        host, number = getattr(address, "host", None), getattr(address, "port", None)
        if host is None or number is None:
            log.info("router listening on {listen}", listen=self.listen)
            return
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown}:{number}/"
        log.info("router listening on {url}", url=self.url)

    def stopService(self) -> Any:
        super().stopService()
        self.hub.stop()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None
