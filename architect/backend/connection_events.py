"""The agents' connection events, kept with the run: those a router sends (protocol.EVENTS)
and the backend's own (`router_lost`, `registered_again`).

Off the hot path: `add` only appends; what waits is written every `every` seconds, in one
transaction, one write at a time. Bounded: at most `max_waiting` events wait (past that
they are dropped and counted, logged once per overflow). A failed write is logged, and
nothing else: a worker never waits for, nor fails by, its timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from architect.connection_events import ConnectionEvent, EventRepeats
from architect.storage import Database

log = Logger()


class ConnectionEventLog(Protocol):
    """Where the backend's handler puts connection events."""

    def add(
        self, events: Sequence[ConnectionEvent], repeats: Sequence[EventRepeats] = ()
    ) -> None: ...

    def settled(self) -> Deferred[None]:
        """Fires once what was added so far is written (or failed to be)."""
        ...


class StoredConnectionEvents:
    def __init__(
        self,
        database: Database,
        clock: IReactorTime,
        every: float = 0.5,
        max_waiting: int = 20_000,
    ) -> None:
        self.database = database
        self.clock = clock
        self.every = every
        self.max_waiting = max_waiting
        self.events: list[ConnectionEvent] = []
        self.repeats: list[EventRepeats] = []
        self.dropped = 0
        self._timer: IDelayedCall | None = None
        self._writing: Deferred[Any] | None = None

    def add(self, events: Sequence[ConnectionEvent], repeats: Sequence[EventRepeats] = ()) -> None:
        room = max(0, self.max_waiting - len(self.events) - len(self.repeats))
        taken = [*events, *repeats][:room]
        if len(taken) < len(events) + len(repeats):
            if not self.dropped:
                log.warn(
                    "{n} connection events wait to be stored already: more are dropped",
                    n=self.max_waiting,
                )
            self.dropped += len(events) + len(repeats) - len(taken)
        self.events.extend(e for e in taken if isinstance(e, ConnectionEvent))
        self.repeats.extend(r for r in taken if isinstance(r, EventRepeats))
        if (self.events or self.repeats) and self._timer is None:
            self._timer = self.clock.callLater(self.every, self._write)

    def _write(self) -> None:
        self._timer = None
        if self._writing is not None:  # one at a time: the next once it is done
            self._timer = self.clock.callLater(self.every, self._write)
            return
        events, repeats, self.events, self.repeats = self.events, self.repeats, [], []
        if self.dropped:
            log.warn("dropped {n} connection events (too many waited)", n=self.dropped)
            self.dropped = 0

        def failed(failure: Failure) -> None:
            log.failure("storing {n} connection events failed", failure, n=len(events))

        def done(_: object) -> None:
            self._writing = None

        # Set first: a write that fails at once has run `done` when addBoth returns.
        self._writing = maybeDeferred(self.database.store_connection_events, events, repeats)
        self._writing.addCallbacks(lambda _: None, failed).addBoth(done)

    def settled(self) -> Deferred[None]:
        """Write what waits now (the daemon stops, or a test reads the timeline); fires once
        it is written."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._writing is not None:
            after: Deferred[None] = Deferred()
            self._writing.addBoth(lambda _: after.callback(None))
            return after.addCallback(lambda _: self.settled())
        if not (self.events or self.repeats):
            return succeed(None)
        self._write()
        return self.settled()
