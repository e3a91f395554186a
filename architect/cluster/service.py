"""The router's cluster part as a Twisted service: started with the router, and stopped
with it, from `[cluster]` (architect/config.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from architect.cluster.routing import ClusterRouting
from architect.cluster.shared_state import SharedState
from architect.redis_url import parse_redis_url
from architect.router.hub import RouterHub


def router_id(configured: str) -> str:
    """This router's name among the others: the configured one, else host:pid."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


class ClusterService(Service):
    """`[cluster]`'s redis, router_id and replay_length (checked by architect/config.py)."""

    def __init__(
        self, reactor: Any, hub: RouterHub, redis: str, configured_id: str, replay_length: int
    ) -> None:
        shared = SharedState(parse_redis_url(redis), router_id(configured_id), replay_length)
        self.routing = ClusterRouting(shared, hub, reactor)

    def startService(self) -> None:
        super().startService()
        # Not waited for: the router serves its own agents while Redis is away.
        self.routing.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.routing.stop()
