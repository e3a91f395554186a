"""Bounded waits: a test or a bot waits for something the daemon should do, and fails with
a message that says what it waited for and what it saw, instead of hanging.

A `Conditions` holds the waits on one object's state (a simulated worker's): each is a
check, run again whenever the state changes (`changed()`), never polled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out: the message says what was awaited and what was seen.

    An AssertionError, so pytest and trial report it as a test failure."""


class NotYet:
    """What a check returns while its condition does not hold yet."""


NOT_YET = NotYet()


class _Wait(Generic[T]):
    def __init__(
        self,
        check: Callable[[], T | NotYet],
        deferred: Deferred[T],
        timer: IDelayedCall | None,
    ) -> None:
        self.check = check
        self.deferred = deferred
        self.timer = timer


class Conditions:
    """The pending waits on some state, each checked again at every `changed()`."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._waits: list[_Wait[Any]] = []

    def wait(
        self,
        check: Callable[[], T | NotYet],
        timeout: float,
        describe: Callable[[], str],
    ) -> Deferred[T]:
        """A Deferred of `check()`'s first value other than NOT_YET (now, or after a later
        `changed()`); it fails with what `check` raises, or with WaitTimeout(describe())
        once `timeout` seconds have passed."""
        try:
            value = check()
        except Exception as e:
            failed: Deferred[T] = Deferred()
            failed.errback(e)
            return failed
        if not isinstance(value, NotYet):
            ready: Deferred[T] = Deferred()
            ready.callback(value)
            return ready

        def cancelled(d: Deferred[T]) -> None:
            self._forget(entry)

        deferred: Deferred[T] = Deferred(cancelled)
        entry: _Wait[T] = _Wait(check, deferred, None)
        entry.timer = self.reactor.callLater(timeout, self._time_out, entry, describe)
        self._waits.append(entry)
        return deferred

    def changed(self) -> None:
        """The state changed: fire the waits whose condition now holds."""
        for entry in list(self._waits):
            if entry not in self._waits:
                continue  # fired by an earlier callback in this loop
            try:
                value = entry.check()
            except Exception as e:
                self._forget(entry)
                entry.deferred.errback(e)
                continue
            if not isinstance(value, NotYet):
                self._forget(entry)
                entry.deferred.callback(value)

    def fail_all(self, error: Exception) -> None:
        """End every pending wait with `error` (the worker was closed)."""
        for entry in list(self._waits):
            self._forget(entry)
            entry.deferred.errback(error)

    @property
    def pending(self) -> int:
        return len(self._waits)

    def _forget(self, entry: _Wait[Any]) -> None:
        if entry in self._waits:
            self._waits.remove(entry)
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()

    def _time_out(self, entry: _Wait[Any], describe: Callable[[], str]) -> None:
        entry.timer = None
        self._forget(entry)
        entry.deferred.errback(WaitTimeout(describe()))


def with_timeout(
    deferred: Deferred[T], reactor: Any, timeout: float, what: str | Callable[[], str]
) -> Deferred[T]:
    """`deferred`, cancelled and failing with WaitTimeout(what) if it has not fired within
    `timeout` seconds (`what` may be a function, asked then)."""
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        timed_out = True
        deferred.cancel()

    timer = reactor.callLater(timeout, expire)

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        # Cancelled, a Deferred may fail with its own error (treq: ResponseNeverReceived).
        if timed_out and isinstance(result, Failure):
            raise WaitTimeout(what if isinstance(what, str) else what())
        return result

    return deferred.addBoth(done)
