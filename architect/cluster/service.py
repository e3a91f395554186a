"""The router's cluster part as a Twisted service: started with the router, and stopped
with it, from `[cluster]` (architect/config.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from architect.cluster.redis_url import parse_redis_url
from architect.cluster.routing import ClusterRouting
from architect.cluster.shared_state import SharedState
from architect.config import ClusterConfig
from architect.router.hub import RouterHub


def router_id(config: ClusterConfig) -> str:
    """This router's name among the others: the configured one, else host:pid."""
    return config.router_id or f"{socket.gethostname()}:{os.getpid()}"


class ClusterService(Service):
    def __init__(self, config: ClusterConfig, reactor: Any, hub: RouterHub) -> None:
        shared = SharedState(parse_redis_url(config.redis), router_id(config), config.replay_length)
        self.routing = ClusterRouting(shared, hub, reactor)

    def startService(self) -> None:
        super().startService()
        # Not waited for: the router serves its own agents while Redis is away.
        self.routing.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.routing.stop()
