"""Units added to a running run, two ways, each at once (a registration from now on can
be given them) and kept as the run's own assignments:

- a list of assignment data objects (the admin control `add_units`, `architect admin
  add-units FILE`): stored after the run's last assignment, whatever the ini file holds;
- the ini file's `[task] units` read again on SIGHUP: like a restart, an assignment is
  added only where the file has more lines than the run holds (lines are matched by their
  place; an edited earlier line changes nothing).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from architect.backend.workers import StoredWorkerPool
from architect.config import ConfigError, load_config

log = Logger()

MAX_UNITS_ADDED = 10_000  # assignments one call may add


class UnitsRefused(ValueError):
    """Units that cannot be added; the message says why."""


def checked_units(value: Any) -> list[dict[str, Any]]:
    """The assignment data objects to add, or UnitsRefused."""
    if not isinstance(value, list) or not value:
        raise UnitsRefused("'units' must be a non-empty list of assignment data objects")
    if len(value) > MAX_UNITS_ADDED:
        raise UnitsRefused(f"at most {MAX_UNITS_ADDED} units at a time, not {len(value)}")
    for number, item in enumerate(value, 1):
        if not isinstance(item, dict):
            raise UnitsRefused(f"unit {number} is not a JSON object")
    return value


async def append_units(pool: StoredWorkerPool, units: list[dict[str, Any]]) -> dict[str, Any]:
    """Store `units` (checked) as new assignments of the pool's run; what was added."""
    run, per_assignment = pool.task_run, pool.settings.units_per_assignment
    first = await pool.database.append_assignments(run.id, units, per_assignment)
    log.info(
        "task run {name}: {count} assignments added at run time (from index {first})",
        name=run.name,
        count=len(units),
        first=first,
    )
    return {
        "added": len(units),
        "first_index": first,
        "units": await pool.database.count_units_by_status(run.id),
    }


async def reread_units(pool: StoredWorkerPool, config_path: Path) -> int:
    """Add what the ini file's `[task] units` holds beyond the run's assignments; how many
    were added. A file that no longer loads, or names another run, adds nothing."""
    try:
        task = load_config(config_path).task
    except ConfigError as e:
        log.error("units not read again: {problem}", problem=str(e))
        return 0
    run = pool.task_run
    if task.name != run.name:
        log.error(
            "units not read again: {path} now names task run {new!r}, this daemon serves"
            " {name!r} (a new run needs a restart)",
            path=str(config_path),
            new=task.name,
            name=run.name,
        )
        return 0
    if task.units is None:
        log.warn("units not read again: {path} names no [task] units", path=str(config_path))
        return 0
    per_assignment = pool.settings.units_per_assignment
    added = await pool.database.add_assignments(run.id, list(task.units), per_assignment)
    log.info(
        "task run {name}: [task] units read again on SIGHUP, {added} new assignments",
        name=run.name,
        added=added,
    )
    return added


class UnitsOnHangup(Service):
    """SIGHUP reads `[task] units` again, once the backend has its pool (main thread only:
    only there can a signal handler be set)."""

    def __init__(
        self, reactor: Any, config_path: Path, pool: Callable[[], StoredWorkerPool | None]
    ) -> None:
        self.reactor = reactor
        self.config_path = config_path
        self.pool = pool
        self._before: Any = None
        self.done: Deferred[int] | None = None  # the last reading, for tests

    def startService(self) -> None:
        super().startService()
        if threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self) -> Deferred[None]:
        if self._before is not None:
            signal.signal(signal.SIGHUP, self._before)
            self._before = None
        super().stopService()
        return succeed(None)  # the daemon waits for each child's stop

    def _hangup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.read_again)

    def read_again(self) -> None:
        pool = self.pool()
        if pool is None:
            log.warn("SIGHUP before the backend was ready: units not read again")
            return
        reading = Deferred.fromCoroutine(reread_units(pool, self.config_path))
        reading.addErrback(self._failed)
        self.done = reading

    def _failed(self, failure: Any) -> int:
        log.failure("units not read again", failure)
        return 0
