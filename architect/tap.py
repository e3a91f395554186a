"""twistd options and makeService: the one place that wires the parts together."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, cast

from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from architect.backend.channel import Channel, InProcessChannel
from architect.backend.client_io import ClientIOHandler
from architect.backend.service import BackendService
from architect.backend.store import MemoryStore
from architect.backend.websocket_channel import WebsocketChannel
from architect.backend.workers import MemoryWorkerPool
from architect.config import Config, ConfigError, load_config
from architect.router.hub import RouterHub
from architect.router.service import RouterService
from architect.router.web import RouterWeb


def demo_units(count: int = 10) -> list[dict[str, Any]]:
    """The units a backend serves until task configuration exists: short texts to read."""
    return [
        {"text": f"Demo unit {n} of {count}: read this sentence, then submit."}
        for n in range(1, count + 1)
    ]


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = (
        "Run the Architect daemon: the router (HTTP + WebSocket for task pages),"
        " the backend, or both, as the config's [backend] mode says."
    )
    optParameters: ClassVar[list[list[str]]] = [
        ["config", "c", "conf/router.ini", "The ini file to run with (see conf/router.ini)."],
    ]

    def postOptions(self) -> None:
        try:
            config = load_config(self["config"])
        except ConfigError as e:
            # One line, no traceback, non-zero exit (twistd would print the whole usage).
            sys.stderr.write(f"architect: {e}\n")
            raise SystemExit(2) from None
        self["loaded"] = config


class ArchitectService(MultiService):
    """The daemon's top service.

    `hub` is the router's hub when this process runs a router; `backend`, `pool`
    and `store` are the backend's parts when it runs a backend.
    """

    hub: RouterHub | None = None
    backend: ClientIOHandler | None = None
    pool: MemoryWorkerPool | None = None
    store: MemoryStore | None = None


def build_service(config: Config, reactor: IReactorTime) -> ArchitectService:
    top = ArchitectService()
    if config.backend.mode in ("off", "embedded"):
        top.hub = RouterHub(reactor, config.router)
        web = RouterWeb(top.hub, config.router)
        router = RouterService(reactor, top.hub, web.site(), config.router.listen)
        router.setName("router")
        router.setServiceParent(top)
    channel: Channel
    if config.backend.mode == "embedded":
        assert top.hub is not None
        channel = InProcessChannel(top.hub, reactor)
    elif config.backend.mode == "remote":
        channel = WebsocketChannel(
            reactor,
            config.backend.router_url,
            token=config.backend.backend_token,
            reconnect_giveup=config.backend.reconnect_giveup,
        )
    else:
        return top
    top.pool = MemoryWorkerPool(reactor, demo_units())
    top.store = MemoryStore()
    top.backend = ClientIOHandler(
        reactor, top.pool, top.store, status_interval=config.backend.status_interval
    )
    backend = BackendService(top.backend, [channel])
    backend.setName("backend")
    backend.setServiceParent(top)
    return top


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    return build_service(cast(Config, options["loaded"]), cast(Any, reactor))
