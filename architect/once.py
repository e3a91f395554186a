"""OneShot: a result several parties wait for, known once (a service being ready)."""

from __future__ import annotations

from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

T = TypeVar("T")


class OneShot(Generic[T]):
    def __init__(self) -> None:
        self._result: tuple[T] | None = None
        self._failure: Failure | None = None
        self._waiters: list[Deferred[T]] = []

    def when(self) -> Deferred[T]:
        """Fires with the result once it is known (fails with its failure)."""
        if self._result is not None:
            return succeed(self._result[0])
        if self._failure is not None:
            return fail(self._failure)
        waiter: Deferred[T] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def succeed(self, result: T) -> None:
        self._result = (result,)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(result)

    def fail(self, failure: Failure) -> None:
        self._failure = failure
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def reset(self) -> None:
        """Forget the result (a service that stopped); those waiting keep waiting."""
        self._result = self._failure = None
