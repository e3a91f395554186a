"""FULL: the whole path a worker takes through our daemon, measured with what is stored.

Fresh workers register and submit at once, ``concurrency`` at a time (load.full_stack), against
our daemon embedded (SQLite, then PostgreSQL) and in remote mode (the router alone and our
backend daemon as a second process). Once the daemons stop, the database is read back: its
counts of agents, completed units and unit submissions, and every acknowledged submission
stored once (runner.verify_stored).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench import load
from bench.servers import OurBackendDaemon, OurEmbedded, OurRouter, Server, SetupError
from tests.postgres import PostgresServer

VARIANTS = ["ours-embedded", "ours-embedded-pg", "ours-remote"]

COUNTS = {
    "agents": "SELECT count(*) FROM agents",
    "units_completed": "SELECT count(*) FROM units WHERE status = 'completed'",
    "unit_submissions": "SELECT count(*) FROM submissions WHERE kind = 'unit'",
}


def database_counts(database: str) -> dict[str, int]:
    """COUNTS read from a SQLite file or a postgresql:// url."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database, connect_timeout=10) as pg:
            return {name: _one(pg.execute(sql).fetchone()) for name, sql in COUNTS.items()}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as db:
        return {name: _one(db.execute(sql).fetchone()) for name, sql in COUNTS.items()}


def _one(row: Any) -> int:
    assert row is not None
    return int(row[0])


def full_problems(check: dict[str, Any], workers: int) -> list[str]:
    """What a FULL run's database check found wrong (nothing, normally)."""
    problems = [f"{check[k]} {k}" for k in ("missing", "duplicates", "unexpected") if check.get(k)]
    expected = {"agents": workers, "units_completed": workers, "unit_submissions": workers}
    for key, value in expected.items():
        if check.get(key) != value:
            problems.append(f"{key} {check.get(key)} != {value}")
    if check.get("acknowledged") != workers:
        problems.append(f"acknowledged {check.get('acknowledged')} != {workers}")
    return problems


def run_full(
    name: str,
    workers: int,
    concurrency: int,
    workdir: Path,
    postgres: PostgresServer | None,
    verify: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One FULL level against `name` (VARIANTS), on fresh daemons and a fresh database: its
    result and its database check (`verify`: runner.verify_stored)."""
    with fresh_database_for(name, postgres) as database:
        return _run_on(name, workers, concurrency, workdir, postgres, database, verify)


@contextmanager
def fresh_database_for(name: str, postgres: PostgresServer | None) -> Iterator[str | None]:
    """For the ours-embedded-pg variant, a new database of `postgres`, dropped afterwards;
    None for the others (SQLite: a fresh file at each start)."""
    if name != "ours-embedded-pg":
        yield None
        return
    if postgres is None:
        raise SetupError("no PostgreSQL server for the ours-embedded-pg variant")
    database = postgres.fresh_database()
    try:
        yield database
    finally:
        postgres.drop_database(database)


def _run_on(
    name: str,
    workers: int,
    concurrency: int,
    workdir: Path,
    postgres: PostgresServer | None,
    database: str | None,
    verify: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = workdir / f"full-{name}"
    router: Server
    stored: OurEmbedded
    started: list[Server] = []
    if name == "ours-remote":
        router = OurRouter(folder / "router")
        router.start()
        started.append(router)
        stored = OurBackendDaemon(folder / "backend", router.ws_url, units=workers)
    else:
        url = postgres.url(database) if postgres is not None and database is not None else None
        stored = router = OurEmbedded(folder, units=workers, database_url=url)
    try:
        stored.start()
        started.append(stored)
        pids = {"router": router.pid, "backend": stored.pid if stored is not router else 0}
        began = time.monotonic()
        [result] = load.run_in_child(
            "FULL",
            120 + workers / 20,
            base=router.http_url,
            workers=workers,
            concurrency=concurrency,
            pids=pids,
            database=stored.database,
        )
        result["seconds"] = round(time.monotonic() - began, 1)
    finally:
        for server in reversed(started):
            server.stop()
    acknowledged = result.pop("acknowledged_agents")
    check: dict[str, Any] = {"server": name, "concurrency": concurrency}
    check["acknowledged"] = len(acknowledged)
    check.update(database_counts(stored.database))
    check.update(verify(stored.config_path, acknowledged))
    return result, check


def run_full_rounds(
    document: dict[str, Any],
    rounds: int,
    workers: int,
    concurrencies: list[int],
    workdir: Path,
    postgres: PostgresServer | None,
    verify: Any,
    median: Any,
) -> list[str]:
    """FULL's rounds, the variants alternated; the failures. `verify`: runner.verify_stored,
    `median`: runner._median_merge (of the rounds, in the summary)."""
    failures: list[str] = []
    variants = [v for v in VARIANTS if postgres is not None or v != "ours-embedded-pg"]
    per_variant: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in variants}
    checks = document.setdefault("full_checks", [])
    for round_number in range(rounds):
        order = variants if round_number % 2 == 0 else variants[::-1]
        for name in order:
            print(f"FULL round {round_number + 1}/{rounds}: {name}...", flush=True)
            results = []
            for concurrency in concurrencies:
                try:
                    result, check = run_full(name, workers, concurrency, workdir, postgres, verify)
                except (SetupError, RuntimeError, subprocess.SubprocessError) as e:
                    print(f"  FAILED: {e}", file=sys.stderr, flush=True)
                    failures.append(f"FULL {name} c={concurrency}: {e}")
                    continue
                check["round"] = round_number
                checks.append(check)
                problems = full_problems(check, workers)
                if problems:
                    failures.append(f"FULL {name}: database check: {', '.join(problems)}")
                    result["check_ok"] = False
                else:
                    result["check_ok"] = True
                print(f"  c={concurrency} in {result['seconds']} s; check: {check}", flush=True)
                results.append(result)
            document["runs"].append(
                {"scenario": "FULL", "server": name, "round": round_number, "results": results}
            )
            per_variant[name].append(results)
    document["summary"]["FULL"] = {
        name: [
            {**entry, "check_ok": all(r["check_ok"] for run in runs for r in run)}
            for entry in median(runs)
        ]
        for name, runs in per_variant.items()
        if runs
    }
    return failures


def full_table(document: dict[str, Any]) -> list[str]:
    """FULL's table: one row per variant and concurrency (medians across rounds)."""
    summary = document.get("summary", {}).get("FULL") or {}
    lines = [
        "FULL (register, submit, stored; fresh daemons and database per level):",
        "",
        "| variant | c | registrations/s | submissions/s acknowledged | until stored /s"
        " | registration p50 / p99 ms | submission p50 / p99 ms | DB check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entries in summary.items():
        for entry in entries:
            ok = "ok" if entry.get("check_ok") else "FAILED"
            reg, sub = entry["registration"], entry["submission"]
            lines.append(
                f"| {name} | {entry['concurrency']} | {entry['registrations_per_s']:,.0f}"
                f" | {entry['submissions_per_s']:,.0f} | {entry['stored_per_s']:,.0f}"
                f" | {reg['p50_ms']:.1f} / {reg['p99_ms']:.1f}"
                f" | {sub['p50_ms']:.1f} / {sub['p99_ms']:.1f} | {ok} |"
            )
    return lines
