"""One registration of a worker at a time: simultaneous requests of one worker cannot
pass a limit together. Locks nobody holds or waits for are forgotten."""

from __future__ import annotations

from twisted.internet.defer import DeferredLock


class WorkerLocks:
    def __init__(self) -> None:
        self._locks: dict[int, DeferredLock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def of(self, worker_id: int) -> _HeldLock:
        """`async with locks.of(worker_id):` runs the block alone for that worker."""
        lock = self._locks.get(worker_id)
        if lock is None:
            lock = self._locks[worker_id] = DeferredLock()
        return _HeldLock(self, worker_id, lock)

    def _release(self, worker_id: int, lock: DeferredLock) -> None:
        lock.release()
        if not lock.locked and not lock.waiting:
            self._locks.pop(worker_id, None)


class _HeldLock:
    def __init__(self, locks: WorkerLocks, worker_id: int, lock: DeferredLock) -> None:
        self.locks = locks
        self.worker_id = worker_id
        self.lock = lock

    async def __aenter__(self) -> None:
        await self.lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.locks._release(self.worker_id, self.lock)
