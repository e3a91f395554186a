"""PendingRequests: the workers' HTTP requests waiting for the backend's answer.

Each is kept by its request id until it is answered (its Deferred fires), times out
(`BackendTimeout`) or is cancelled (a worker who gives up). Those not answered yet go to
a new backend again when one connects.

Every request waits the same `timeout`, so their deadlines come in the order they were
made: one timer, set for the oldest, serves them all (a timer made and cancelled per
request was a share of a registration's cost). Answered requests leave the queue as
they reach its head.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from architect.protocol import Packet
from architect.router.errors import BackendTimeout, RouterError

# A deadline this close is reached (a timer set again for the rest lands within rounding).
_ROUNDING = 1e-6


@attrs.define(eq=False)
class PendingRequest:
    request_id: str
    packet: Packet | None  # None once it left (answered, cancelled, failed)
    deferred: Deferred[dict[str, Any]] | None
    deadline: float


class PendingRequests:
    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout  # seconds: [router] request_timeout
        self._pending: dict[str, PendingRequest] = {}
        self._by_deadline: deque[PendingRequest] = deque()  # oldest first
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, request_id: str, packet: Packet) -> Deferred[dict[str, Any]]:
        """Wait for the answer to `packet`."""

        def cancelled(d: Deferred[dict[str, Any]]) -> None:
            self._leave(request_id)

        deferred: Deferred[dict[str, Any]] = Deferred(cancelled)
        entry = PendingRequest(request_id, packet, deferred, self.clock.seconds() + self.timeout)
        self._leave(request_id)  # a request id made again replaces the older one
        self._pending[request_id] = entry
        self._by_deadline.append(entry)
        if self._timer is None:
            self._timer = self.clock.callLater(self.timeout, self._deadline_reached)
        return deferred

    def answer(self, request_id: str, answer: dict[str, Any]) -> None:
        deferred = self._leave(request_id)
        if deferred is not None:
            deferred.callback(answer)

    def is_pending(self, request_id: object) -> bool:
        return isinstance(request_id, str) and request_id in self._pending

    def unanswered(self) -> list[Packet]:
        """The packets of the requests still waiting, oldest first."""
        return [entry.packet for entry in self._pending.values() if entry.packet is not None]

    def fail_all(self, error: RouterError) -> None:
        pending, self._pending = self._pending, {}
        self._by_deadline.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for entry in pending.values():
            deferred, entry.deferred, entry.packet = entry.deferred, None, None
            if deferred is not None:
                deferred.errback(error)

    def _leave(self, request_id: str) -> Deferred[dict[str, Any]] | None:
        """Take the request out; its Deferred, None if it was not waiting."""
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return None
        deferred, entry.deferred, entry.packet = entry.deferred, None, None
        queue = self._by_deadline
        while queue and queue[0].deferred is None:
            queue.popleft()
        if not queue and self._timer is not None:  # none waits: nothing left behind
            self._timer.cancel()
            self._timer = None
        return deferred

    def _deadline_reached(self) -> None:
        self._timer = None
        queue = self._by_deadline
        now = self.clock.seconds()
        expired: list[Deferred[dict[str, Any]]] = []
        while queue:
            entry = queue[0]
            if entry.deadline > now + _ROUNDING:
                self._timer = self.clock.callLater(entry.deadline - now, self._deadline_reached)
                break
            queue.popleft()
            deferred = self._leave(entry.request_id) if entry.deferred is not None else None
            if deferred is not None:
                expired.append(deferred)
        # Failed once the queue and its timer are in order: a callback may add requests.
        for deferred in expired:
            deferred.errback(
                BackendTimeout(f"the backend did not answer within {self.timeout:g} seconds")
            )
