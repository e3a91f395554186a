"""twistd options and makeService: the one place that wires the parts together."""

from __future__ import annotations

import sys
from typing import Any, ClassVar, cast

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.python import usage

from architect.config import Config, ConfigError, load_config
from architect.router.hub import RouterHub
from architect.router.web import RouterWeb

BUILT_MODES = ("off",)


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
            if config.backend.mode not in BUILT_MODES:
                raise ConfigError(
                    config.path, "backend", "mode", f"{config.backend.mode!r} is not available yet"
                )
        except ConfigError as e:
            # One line, no traceback, non-zero exit (twistd would print the whole usage).
            sys.stderr.write(f"architect: {e}\n")
            raise SystemExit(2) from None
        self["loaded"] = config


class ArchitectService(MultiService):
    """The daemon's top service; `hub` is the router's hub when this process runs a router."""

    hub: RouterHub | None = None


def build_service(config: Config, reactor: IReactorTime) -> ArchitectService:
    top = ArchitectService()
    if config.backend.mode in ("off", "embedded"):
        top.hub = RouterHub(reactor, config.router)
        web = RouterWeb(top.hub, config.router)
        listener = strports.service(config.router.listen, web.site())
        listener.setName("router")
        listener.setServiceParent(top)
    return top


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    return build_service(cast(Config, options["loaded"]), cast(Any, reactor))
