"""`architect bots`: a load and soak run of the task's bots, and its report.

Against the daemon at `--url`, or, without it, a daemon started for the config
(run_daemon.py: a free port, a temporary database, removed after; enough units for every
worker), in a process of its own (separate.py), or in this one (`in_process`: quicker to
start, for tests; the bots then share its core). The errors it logs go in the report.
Afterwards what the bots saw is checked against its database (verify.py); with `--url`,
against the database the config names, if this machine can read it.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import attrs
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import (
    globalLogBeginner,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.web.client import HTTPConnectionPool

from architect.config import Config, ConfigError
from architect.storage import Database, StorageError, open_database
from architect.tap import BUILTIN_TASK_MODULE
from architect.tasks.hooks import TaskModuleError, load_task_module
from architect.testing import report
from architect.testing.bots import Bot, BotError, bot_of
from architect.testing.daemon import TaskDaemon
from architect.testing.load import BotRun, WorkerRecord
from architect.testing.progress import Progress
from architect.testing.run_daemon import DaemonErrors, daemon_for_run
from architect.testing.separate import SeparateDaemon
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
    in_process: bool = False  # the daemon in this process, not a process of its own


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
    separate: SeparateDaemon | None = None
    errors: DaemonErrors | None = None
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 64
    try:
        if options.url is not None:
            url = options.url
        elif options.in_process:
            errors = DaemonErrors()
            globalLogPublisher.addObserver(errors)
            daemon = daemon_for_run(config, options.workers, options.duration, reactor)
            await daemon.start()
            url = daemon.url
        else:
            separate = SeparateDaemon(reactor, config, options.workers, options.duration)
            await separate.start()
            url = separate.url
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
        await pool.closeCachedConnections()
        if separate is not None:
            await separate.stop()
            checks = await _checks_of_stopped(reactor, config, separate, records)
        else:
            checks = await _checks(reactor, config, daemon, records)
        if options.url:
            target = url
        elif options.in_process:
            target = "a daemon started for the run, in the bots' process"
        else:
            target = "a daemon started for the run, in a process of its own"
        settings = {
            "config": str(config.path),
            "target": target,
            "task": config.task.name,
            "workers": options.workers,
            "duration": options.duration,
            "disconnect_rate": options.disconnect_rate,
            "think": options.think,
            "seed": options.seed,
        }
        daemon_errors = errors.errors if errors is not None else None
        if separate is not None:
            daemon_errors = separate.errors
        return report.build(
            settings=settings,
            records=records,
            elapsed=run.elapsed,
            checks=checks,
            daemon_errors=daemon_errors,
        )
    finally:
        await pool.closeCachedConnections()
        if daemon is not None:
            await daemon.stop()
        if separate is not None:
            await separate.stop()
            separate.remove()
        if errors is not None:
            globalLogPublisher.removeObserver(errors)


async def _checks_of_stopped(
    reactor: Any, config: Config, separate: SeparateDaemon, records: list[WorkerRecord]
) -> Checks:
    database = await separate.open_database()
    try:
        run = await database.get_task_run(config.task.name)
        if run is None:
            return Checks(checked=False, note=f"the daemon stored no task run {config.task.name!r}")
        return await check(database, run.id, records)
    finally:
        await database.close()


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

    async def count() -> list[Any]:
        return await database.list_submissions(task_run_id=run_id)

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
