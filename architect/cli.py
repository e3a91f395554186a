"""The `architect` command: what the requester reads from the daemon's database, and bots.

    architect results [--config FILE] [--run NAME] [--format jsonl|csv] [--timeline]
    architect status  [--config FILE] [--run NAME]
    architect workers [--config FILE]
    architect grant   [--config FILE] [--provider TYPE] WORKER QUALIFICATION [VALUE]
    architect revoke  [--config FILE] [--provider TYPE] WORKER QUALIFICATION
    architect token
    architect migrate [--config FILE] --to postgresql://USER@HOST/DB [--password-file F]
    architect admin ... [--config FILE]   (a running daemon's controls: architect/admin/cli.py)
    architect bots    [--config FILE] [--workers N] [--duration S] [--disconnect-rate P]
                      [--url URL] [--think S] [--seed N] [--json] [--no-progress] [--log F]
                      [--in-process]

It reads the same config file as the daemon (its [storage] for the database,
its [task] name for the run); `token` prints a new random secret for
`backend_token`; `bots` plays the task with N simulated workers at once, against the
daemon at URL or one it starts for FILE, and reports (architect/testing/command.py;
docs/testing.md). Bad arguments, a bad config and a missing
database each give one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import csv
import json
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from architect.admin import cli as admin_cli
from architect.config import Config, ConfigError, load_config
from architect.database_url import DatabaseUrl, parse_database_url
from architect.storage import Database, StorageError, TaskRun, open_database
from architect.timeline import timeline

CSV_FIELDS = (
    "received_at",
    "kind",
    "agent_id",
    "agent_status",
    "worker_name",
    "provider_type",
    "assignment_index",
    "unit_index",
    "data",
    "files",
    "assignment_data",
)


# A spreadsheet reads a cell starting with one of these as a formula (or a command).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs: JSON for structures, text led by a quote when a
    worker's text (a name, an answer) would read as a formula."""
    if isinstance(value, dict | list):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class CommandError(Exception):
    """A problem worth one line to the user."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="architect", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary)
        sub.add_argument("--config", "-c", default="conf/router.ini", help="the daemon's ini file")
        return sub

    results = command("results", "print the submissions, one per line")
    results.add_argument("--run", help="the task run's name (default: the config's [task] name)")
    results.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    results.add_argument(
        "--timeline", action="store_true", help="each agent's events instead (JSONL)"
    )
    status = command("status", "count units and agents by status")
    status.add_argument("--run", help="the task run's name (default: the config's [task] name)")
    command("workers", "list workers and their qualifications")
    grant = command("grant", "give a worker a qualification (VALUE is JSON, or else text)")
    revoke = command("revoke", "take a qualification from a worker")
    for sub in (grant, revoke):
        sub.add_argument("--provider", default="mock", help="the worker's provider_type")
        sub.add_argument("worker", help="the worker's name")
        sub.add_argument("qualification", help="the qualification's name")
    grant.add_argument("value", nargs="?", default="1", help="default: 1")
    commands.add_parser("token", help="print a new random secret for [router] backend_token")
    admin_cli.add_commands(command("admin", "control a running daemon through its admin listener"))
    bots = command("bots", "play the task with simulated workers at once, and report")
    bots.add_argument("--workers", "-n", type=_positive(int), default=10, help="at once")
    bots.add_argument(
        "--duration", type=_positive(float), help="seconds to keep workers coming (default: N once)"
    )
    bots.add_argument(
        "--disconnect-rate",
        type=_fraction,
        default=0.0,
        help="the share of workers whose connection drops or whose page reloads once",
    )
    bots.add_argument("--url", help="the daemon to play against (default: one started for FILE)")
    bots.add_argument(
        "--think", type=float, default=0.2, help="mean seconds a bot pauses before each action"
    )
    bots.add_argument("--seed", type=int, default=0, help="for the disruptions and the pauses")
    bots.add_argument(
        "--worker-timeout",
        type=_positive(float),
        default=300.0,
        help="seconds one worker may take at most",
    )
    bots.add_argument("--json", action="store_true", help="the report as JSON")
    bots.add_argument("--log", help="append the daemon's log to this file (default: none)")
    bots.add_argument(
        "--in-process",
        action="store_true",
        help="run the daemon in the bots' process (default: a process of its own)",
    )
    bots.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    migrate = command("migrate", "copy the SQLite database into an empty PostgreSQL one")
    migrate.add_argument("--to", required=True, type=_database_url, help="postgresql://...")
    migrate.add_argument("--password-file", help="its first line is the password (or PGPASSWORD)")
    return top


def _database_url(text: str) -> DatabaseUrl:
    try:
        return parse_database_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


# Bytes of randomness in a token `architect token` prints (43 characters of base64url).
TOKEN_BYTES = 32


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "token":
        print(secrets.token_urlsafe(TOKEN_BYTES))
        return
    try:
        config = load_config(args.config)
    except ConfigError as e:
        sys.stderr.write(f"architect: {e}\n")
        raise SystemExit(2) from None
    if args.command == "admin":
        raise SystemExit(admin_cli.run(args, config))
    if args.command == "bots":
        _bots(args, config)
        return
    if args.command == "migrate":
        react(_migrate, (args, config, sys.stdout))
        return
    react(_run, (args, config, sys.stdout))


def _bots(args: argparse.Namespace, config: Config) -> None:
    try:
        from architect.testing.command import BotOptions, main_bots
    except ImportError as e:  # treq is an extra
        hint = "pip install 'architect-router[testing]'"
        sys.stderr.write(f"architect: bots need {e.name}: {hint}\n")
        raise SystemExit(2) from None
    options = BotOptions(
        workers=args.workers,
        duration=args.duration,
        disconnect_rate=args.disconnect_rate,
        url=args.url,
        think=args.think,
        seed=args.seed,
        worker_timeout=args.worker_timeout,
        as_json=args.json,
        progress=not args.no_progress,
        log_file=args.log,
        in_process=args.in_process,
    )
    react(lambda reactor: Deferred.fromCoroutine(main_bots(reactor, config, options)))


async def _run(reactor: Any, args: argparse.Namespace, config: Config, out: TextIO) -> None:
    try:
        database = await _open(reactor, config)
    except (CommandError, StorageError) as e:
        sys.stderr.write(f"architect: {e}\n")
        raise SystemExit(1) from None
    try:
        if args.command == "results" and args.timeline:
            await timeline(database, await _task_run(database, args.run or config.task.name), out)
        elif args.command == "results":
            await results(
                database, await _task_run(database, args.run or config.task.name), args.format, out
            )
        elif args.command == "status":
            await status(database, await _task_run(database, args.run or config.task.name), out)
        elif args.command == "grant":
            await grant(database, args.provider, args.worker, args.qualification, args.value, out)
        elif args.command == "revoke":
            await revoke(database, args.provider, args.worker, args.qualification, out)
        else:
            await workers(database, out)
    except (CommandError, StorageError) as e:
        sys.stderr.write(f"architect: {e}\n")
        raise SystemExit(1) from None
    finally:
        await database.close()


async def _migrate(reactor: Any, args: argparse.Namespace, config: Config, out: TextIO) -> None:
    from architect.storage.migrate import migrate

    password_file = None if args.password_file is None else Path(args.password_file)
    try:
        copied = await migrate(config.storage, args.to, password_file)
    except (StorageError, OSError, ValueError) as e:
        sys.stderr.write(f"architect: {e}\n")
        raise SystemExit(1) from None
    for table, rows in copied.rows.items():
        out.write(f"{table}: {rows} rows\n")
    out.write(
        f"copied into {args.to}; to use it, set [storage] url = {args.to}"
        f" in {config.path} (keep data_dir: the uploaded files stay there)\n"
    )


async def _open(reactor: Any, config: Config) -> Database:
    path = config.storage.data_dir / config.storage.database
    if config.storage.url is None and not path.is_file():
        raise CommandError(f"no database at {path} (has the daemon run with {config.path}?)")
    return await open_database(config.storage, reactor=reactor)


async def _task_run(database: Database, name: str) -> TaskRun:
    run = await database.get_task_run(name)
    if run is None:
        known = [r.name for r in await database.list_task_runs()]
        raise CommandError(
            f"no task run named {name!r} (runs: {', '.join(known) if known else 'none yet'})"
        )
    return run


async def results(database: Database, run: TaskRun, format: str, out: TextIO) -> None:
    agents = {a.agent_id: a for a in await database.list_agents(task_run_id=run.id)}
    units = {u.id: u for u in await database.list_units(run.id)}
    workers = {w.id: w for w in await database.list_workers()}
    rows: list[dict[str, Any]] = []
    for submission in await database.list_submissions(task_run_id=run.id):
        agent = agents.get(submission.agent_id)
        unit = units.get(agent.unit_id) if agent is not None and agent.unit_id else None
        worker = workers.get(agent.worker_id) if agent is not None else None
        rows.append(
            {
                "received_at": submission.received_at,
                "kind": submission.kind,
                "agent_id": submission.agent_id,
                "agent_status": agent.status if agent is not None else None,
                "worker_id": worker.id if worker is not None else None,
                "worker_name": worker.worker_name if worker is not None else None,
                "provider_type": worker.provider_type if worker is not None else None,
                "unit_id": unit.id if unit is not None else None,
                "assignment_index": unit.assignment_index if unit is not None else None,
                "unit_index": unit.unit_index if unit is not None else None,
                "assignment_data": unit.assignment_data if unit is not None else None,
                "data": submission.data,
                "files": [
                    {
                        "original_name": f.original_name,
                        "path": str(database.data_dir / f.stored_path),
                        "size": f.size,
                        "mimetype": f.mimetype,
                    }
                    for f in submission.files
                ],
            }
        )
    if format == "csv":
        writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: spreadsheet_cell(value) for key, value in row.items()})
        return
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


async def status(database: Database, run: TaskRun, out: TextIO) -> None:
    units = await database.count_units_by_status(run.id)
    agents = await database.count_agents_by_status(run.id)
    out.write(f"task run {run.name}\n")
    out.write(f"units: {_counts(units)} (total {sum(units.values())})\n")
    out.write(f"agents: {_counts(agents)} (total {sum(agents.values())})\n")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"


async def workers(database: Database, out: TextIO) -> None:
    for worker in await database.list_workers():
        granted = await database.get_qualifications(worker.id)
        row = {
            "worker_id": worker.id,
            "provider_type": worker.provider_type,
            "worker_name": worker.worker_name,
            "qualifications": {name: q.value for name, q in sorted(granted.items())},
        }
        out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


async def grant(
    database: Database, provider: str, name: str, qualification: str, value: str, out: TextIO
) -> None:
    # A worker not seen yet is created, so workers can be qualified before they come.
    worker = await database.find_or_create_worker(provider, name)
    granted = _json_or_text(value)
    await database.grant_qualification(worker.id, qualification, granted)
    out.write(f"granted {qualification} = {json.dumps(granted)} to {provider} worker {name}\n")


async def revoke(
    database: Database, provider: str, name: str, qualification: str, out: TextIO
) -> None:
    worker = next(
        (
            w
            for w in await database.list_workers()
            if w.provider_type == provider and w.worker_name == name
        ),
        None,
    )
    if worker is None:
        raise CommandError(f"no {provider} worker named {name!r}")
    if not await database.revoke_qualification(worker.id, qualification):
        raise CommandError(f"{provider} worker {name!r} has no qualification {qualification!r}")
    out.write(f"revoked {qualification} from {provider} worker {name}\n")


if __name__ == "__main__":
    main()
