"""The daemon a bot run starts for its config: the config's task, on a free port, with a
temporary database, enough units for every worker, no cap on connections from one
address (every bot comes from 127.0.0.1), no access log; and the errors it logs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from zope.interface import implementer

from architect.config import Config
from architect.demo.builtin import builtin_units
from architect.testing.daemon import TaskDaemon


def enough_units(config: Config, workers: int, duration: float | None) -> tuple[Any, ...]:
    """The config's units, repeated so that every worker of the run finds one."""
    base = list(config.task.units) if config.task.units is not None else builtin_units()
    # A worker takes a second at least: a run of D seconds needs at most D per place.
    seats = workers * (max(2, math.ceil(duration)) if duration else 2) + 10
    assignments = max(len(base), math.ceil(seats / config.task.units_per_assignment))
    return tuple(base[i % len(base)] for i in range(assignments))


def daemon_for_run(
    config: Config,
    workers: int,
    duration: float | None,
    reactor: Any,
    folder: Path | None = None,
) -> TaskDaemon:
    return TaskDaemon(
        config,
        reactor=reactor,
        folder=folder,
        router={
            "max_connections_per_address": 0,
            "max_connections": max(4000, workers * 4),
            "access_log": False,
        },
        task={"units": enough_units(config, workers, duration)},
    )


def daemon_error(event: LogEvent) -> str | None:
    """The text of an error the daemon's own code logged; None for any other event (the
    bots' events are the report's, not the daemon's)."""
    if event.get("log_level") not in (LogLevel.error, LogLevel.critical):
        return None
    namespace = str(event.get("log_namespace", ""))
    if not namespace.startswith("architect.") or namespace.startswith("architect.testing"):
        return None
    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += f": {failure.type.__name__}: {failure.getErrorMessage()}"
    return text


@implementer(ILogObserver)
class DaemonErrors:
    """Keeps the errors the daemon logs (`daemon_error`)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        text = daemon_error(event)
        if text is not None:
            self.errors.append(text)
