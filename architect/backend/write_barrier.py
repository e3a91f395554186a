"""WriteBarrier: which of the backend's database writes are committed, in the order issued.

The recorder writes each agent event (a status, a live update) without making anyone
wait. What the backend sends out must not run ahead of them: a page that was shown a
live update, or its partner's message, must find it in the database after a crash
(docs/reliability.md). Each write gets the next number when issued; `durable` is the
highest number up to which every write is done (committed, or failed and logged, so a
broken write never holds everything up). `AgentRoutes` holds each outgoing packet
until the writes issued before it are durable.
"""

from __future__ import annotations

import heapq
from typing import Any

from twisted.internet.defer import Deferred


class WriteBarrier:
    def __init__(self) -> None:
        self.issued = 0  # the number of the last write issued
        self.durable = 0  # every write up to this number is done
        self._open: set[int] = set()  # issued, not yet done
        self._waiting: list[tuple[int, int, Deferred[None]]] = []  # (mark, order, d): a heap
        self._order = 0

    def track(self, write: Deferred[Any]) -> None:
        """A write just issued; it counts as done however it ends."""
        self.issued += 1
        number = self.issued
        self._open.add(number)

        def done(result: object) -> object:
            self._open.discard(number)
            self._advance()
            return result

        write.addBoth(done)

    def mark(self) -> int:
        """The point to wait for: every write issued so far."""
        return self.issued

    def is_durable(self, mark: int) -> bool:
        return mark <= self.durable

    def when_durable(self, mark: int) -> Deferred[None]:
        """Fires once every write up to `mark` is done."""
        d: Deferred[None] = Deferred()
        if self.is_durable(mark):
            d.callback(None)
            return d
        self._order += 1
        heapq.heappush(self._waiting, (mark, self._order, d))
        return d

    def _advance(self) -> None:
        while self.durable < self.issued and self.durable + 1 not in self._open:
            self.durable += 1
        while self._waiting and self._waiting[0][0] <= self.durable:
            _, _, d = heapq.heappop(self._waiting)
            d.callback(None)
