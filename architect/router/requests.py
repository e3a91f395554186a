"""PendingRequests: the workers' HTTP requests waiting for the backend's answer.

Each is kept by its request id with a timer: an answer fires its Deferred, the
timer fails it with `BackendTimeout`, a worker who gives up cancels it. Those
not answered yet go to a new backend again when one connects.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from architect.protocol import Packet
from architect.router.errors import BackendTimeout, RouterError


@attrs.define(eq=False)
class PendingRequest:
    packet: Packet
    deferred: Deferred[dict[str, Any]]
    timer: IDelayedCall


class PendingRequests:
    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout  # seconds: [router] request_timeout
        self._pending: dict[str, PendingRequest] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, request_id: str, packet: Packet) -> Deferred[dict[str, Any]]:
        """Wait for the answer to `packet`."""

        def cancelled(d: Deferred[dict[str, Any]]) -> None:
            pending = self._pending.pop(request_id, None)
            if pending is not None and pending.timer.active():
                pending.timer.cancel()

        deferred: Deferred[dict[str, Any]] = Deferred(cancelled)
        timer = self.clock.callLater(self.timeout, self._time_out, request_id)
        self._pending[request_id] = PendingRequest(packet, deferred, timer)
        return deferred

    def answer(self, request_id: str, answer: dict[str, Any]) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.timer.cancel()
            pending.deferred.callback(answer)

    def is_pending(self, request_id: object) -> bool:
        return isinstance(request_id, str) and request_id in self._pending

    def unanswered(self) -> list[Packet]:
        """The packets of the requests still waiting, oldest first."""
        return [pending.packet for pending in self._pending.values()]

    def fail_all(self, error: RouterError) -> None:
        pending, self._pending = self._pending, {}
        for request in pending.values():
            request.timer.cancel()
            request.deferred.errback(error)

    def _time_out(self, request_id: str) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.deferred.errback(
                BackendTimeout(f"the backend did not answer within {self.timeout:g} seconds")
            )
