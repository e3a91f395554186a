"""What the router hub asks of the cluster (architect/cluster/routing.py implements it): a
narrow interface, defined on the router's side so that the router never imports the
cluster package or the Redis client (a router alone never loads them)."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred

from architect.protocol import Packet


class ClusterPort(Protocol):
    def socket_attached(self, agent_id: str, link: Any) -> None:
        """A socket of this router now speaks for the agent."""

    def socket_detached(self, agent_id: str) -> None:
        """This router holds no socket for the agent any more."""

    def live_update(self, packet: Packet, here: bool) -> bool:
        """A client-bound live update from the backend: kept for a failover, passed to the
        router holding the agent's socket. True when it is to be delivered here."""

    def look_up(self, link: Any, packet: Packet, session: str | None) -> bool:
        """A socket's first packet names an agent this router does not know: True if the
        others are asked (the packet is taken again once they answered)."""

    def learn(self, agent_id: str | None) -> Deferred[bool]:
        """Ask the others for an agent this router does not know: True once it knows it."""

    def registered(self, answer: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """A registration answer, given back once the other routers know its agent."""
