"""`architect bots`: a load and soak run of the task's bots, and its report.

Against the daemon at `--url`, or, without it, a daemon started here for the config
(TaskDaemon: a free port, a temporary database, removed after). That daemon gets
enough units for every worker (the units file's assignments repeated), no cap on
connections from one address (every bot comes from 127.0.0.1) and no access log; the
errors it logs go in the report. Afterwards what the bots saw is checked against its
database (verify.py); with `--url`, against the database the config names, if this
machine can read it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, TextIO

import attrs
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import (
    ILogObserver,
    LogEvent,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from architect.config import Config, ConfigError
from architect.demo.builtin import builtin_units
from architect.storage import Database, StorageError, open_database
from architect.tap import BUILTIN_TASK_MODULE
from architect.tasks.hooks import TaskModuleError, load_task_module
from architect.testing import report
from architect.testing.bots import Bot, BotError, bot_of
from architect.testing.daemon import TaskDaemon
from architect.testing.load import BotRun, WorkerRecord
from architect.testing.progress import Progress
from architect.testing.verify import Checks, check

PROGRESS_EVERY = 0.5  # seconds between redraws of the progress line
SETTLE_TRIES = 20  # an external daemon's database, read until two reads agree (0.5 s apart)


@attrs.frozen
class BotOptions:
    workers: int = 10
    duration: float | None = None
    disconnect_rate: float = 0.0
    url: str | None = None
    think: float = 0.2
    seed: int = 0
    worker_timeout: float = 300.0
    wait_timeout: float = 30.0  # a bot's longest wait for one thing (a loaded daemon is slow)
    as_json: bool = False
    progress: bool = True
    log_file: str | None = None  # where the daemon's log goes (default: nowhere)


@implementer(ILogObserver)
class DaemonErrors:
    """The errors the daemon's own code logs (not the bots': they are the report's)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level") not in (LogLevel.error, LogLevel.critical):
            return
        namespace = str(event.get("log_namespace", ""))
        if not namespace.startswith("architect.") or namespace.startswith("architect.testing"):
            return
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text += f": {failure.type.__name__}: {failure.getErrorMessage()}"
        self.errors.append(text)


def enough_units(config: Config, workers: int, duration: float | None) -> tuple[Any, ...]:
    """The config's units, repeated so that every worker of the run finds one."""
    base = list(config.task.units) if config.task.units is not None else builtin_units()
    # A worker takes a second at least: a run of D seconds needs at most D per place.
    seats = workers * (max(2, math.ceil(duration)) if duration else 2) + 10
    assignments = max(len(base), math.ceil(seats / config.task.units_per_assignment))
    return tuple(base[i % len(base)] for i in range(assignments))


def bot_for(config: Config) -> Bot:
    try:
        return bot_of(load_task_module(config.task.module or BUILTIN_TASK_MODULE))
    except (TaskModuleError, BotError) as e:
        raise ConfigError(config.path, "task", "module", str(e)) from None


async def run_bots(
    reactor: Any, config: Config, options: BotOptions, out: TextIO, err: TextIO
) -> dict[str, Any]:
    """Run the bots as `options` say; the report (its "passed" says how it went)."""
    bot = bot_for(config)
    daemon: TaskDaemon | None = None
    errors: DaemonErrors | None = None
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 64
    try:
        if options.url is None:
            errors = DaemonErrors()
            globalLogPublisher.addObserver(errors)
            daemon = TaskDaemon(
                config,
                reactor=reactor,
                router={
                    "max_connections_per_address": 0,
                    "max_connections": max(4000, options.workers * 4),
                    "access_log": False,
                },
                task={"units": enough_units(config, options.workers, options.duration)},
            )
            await daemon.start()
        url = options.url or (daemon.url if daemon else "")
        run = BotRun(
            reactor,
            url,
            bot,
            workers=options.workers,
            duration=options.duration,
            disconnect_rate=options.disconnect_rate,
            think=options.think,
            seed=options.seed,
            worker_timeout=options.worker_timeout,
            wait_timeout=options.wait_timeout,
            pool=pool,
        )
        records = await _with_progress(reactor, run, err if options.progress else None)
        checks = await _checks(reactor, config, daemon, records)
        settings = {
            "config": str(config.path),
            "target": url if options.url else "a daemon started for the run",
            "task": config.task.name,
            "workers": options.workers,
            "duration": options.duration,
            "disconnect_rate": options.disconnect_rate,
            "think": options.think,
            "seed": options.seed,
        }
        return report.build(
            settings=settings,
            records=records,
            elapsed=run.elapsed,
            checks=checks,
            daemon_errors=errors.errors if errors is not None else None,
        )
    finally:
        await pool.closeCachedConnections()
        if daemon is not None:
            await daemon.stop()
        if errors is not None:
            globalLogPublisher.removeObserver(errors)


async def _with_progress(reactor: Any, run: BotRun, err: TextIO | None) -> list[WorkerRecord]:
    if err is None:
        return await run.run()
    progress = Progress(err, run.fraction, run.line)
    loop = LoopingCall(progress.show)
    loop.clock = reactor
    loop.start(PROGRESS_EVERY, now=False)
    try:
        return await run.run()
    finally:
        loop.stop()
        progress.finish()


async def _checks(
    reactor: Any, config: Config, daemon: TaskDaemon | None, records: list[WorkerRecord]
) -> Checks:
    if daemon is not None:
        await daemon.settled()
        assert daemon.service is not None and daemon.service.pool is not None
        return await check(daemon.database, daemon.service.pool.task_run.id, records)
    path = config.storage.data_dir / config.storage.database
    if not path.is_file():
        return Checks(checked=False, note=f"no database at {path} on this machine")
    try:
        database = await open_database(config.storage, reactor=reactor)
    except StorageError as e:
        return Checks(checked=False, note=str(e))
    try:
        run = await database.get_task_run(config.task.name)
        if run is None:
            return Checks(checked=False, note=f"no task run {config.task.name!r} in {path}")
        await _settle(reactor, database, run.id)
        return await check(database, run.id, records)
    finally:
        await database.close()


async def _settle(reactor: Any, database: Database, run_id: int) -> None:
    """Wait until another process's daemon has stored what it acknowledged."""
    count: Callable[[], Any] = lambda: database.list_submissions(task_run_id=run_id)  # noqa: E731
    last = len(await count())
    for _ in range(SETTLE_TRIES):
        await deferLater(reactor, 0.5)
        now = len(await count())
        if now == last:
            return
        last = now


def begin_logging(log_file: str | None) -> None:
    """The daemon's log to `log_file`, or nowhere: stderr has the progress line, and the
    report the errors (without this, Twisted would print them as they come)."""
    observers: list[Any] = []
    if log_file is not None:
        observers.append(textFileLogObserver(open(log_file, "a", encoding="utf-8")))
    globalLogBeginner.beginLoggingTo(observers, discardBuffer=True, redirectStandardIO=False)


def main_bots(reactor: Any, config: Config, options: BotOptions) -> Any:
    """For `architect bots` (cli.py): run, print the report, exit 1 unless it passed."""
    begin_logging(options.log_file)

    async def run() -> None:
        try:
            outcome = await run_bots(reactor, config, options, sys.stdout, sys.stderr)
        except ConfigError as e:
            sys.stderr.write(f"architect: {e}\n")
            raise SystemExit(2) from None
        text = report.as_json(outcome) + "\n" if options.as_json else report.as_text(outcome)
        sys.stdout.write(text)
        sys.stdout.flush()
        if not outcome["passed"]:
            raise SystemExit(1)

    return run()
