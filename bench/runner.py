"""The runner: starts each server in turn, drives the scenarios, writes JSON, table and plots."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import load, report
from bench.cluster import OneRouterBehindHAProxy, OurCluster, TwoRoutersBehindHAProxy
from bench.full_stack import fresh_database_for, run_full_rounds
from bench.registration import run_reg_rounds
from bench.servers import (
    BENCH_DIR,
    SERVERS,
    OurEmbedded,
    OurRouter,
    Server,
    SetupError,
    mephisto_router_dir,
)
from tests.postgres import PostgresServer, PostgresUnavailable, start_server

ALL_SERVERS = ["ours", "mephisto", "floor"]
# Asked for by name (--servers ours,ours-lb1,ours-lb2): redis-server and haproxy installed.
CLUSTERS: dict[str, type[OurCluster]] = {
    "ours-lb1": OneRouterBehindHAProxy,
    "ours-lb2": TwoRoutersBehindHAProxy,
}
ALL_SCENARIOS = ["S1", "S2", "S3", "S4", "FULL", "REG"]
# S4 is ours only: the embedded daemon storing to SQLite, the same storing to PostgreSQL,
# and beside them, for the cost of durability, the router alone (mode = off) with the
# generator's backend taking each submission without storing it.
S4_VARIANTS = ["ours-embedded", "ours-embedded-pg", "ours"]
EMBEDDED_VARIANTS = ("ours-embedded", "ours-embedded-pg")


@dataclass
class Plan:
    rounds: int
    s1_concurrencies: list[int]
    s1_duration: float
    s2_agents: list[int]
    s2_rate: float  # live updates per second per agent, for the open-loop (fixed rate) part
    s2_duration: float
    s3_agents: list[int]
    s3_hold: float
    warmup: float
    s3_interval: float = 6.0
    s4_concurrencies: list[int] = field(default_factory=lambda: [1, 16])
    s4_submissions: int = 600  # measured submissions per concurrency (one agent each)
    s4_warmup: int = 20  # submissions before each measured batch, not timed
    full_concurrencies: list[int] = field(default_factory=lambda: [16])
    full_workers: int = 300  # fresh workers per level, each registering and submitting once
    reg_concurrencies: list[int] = field(default_factory=lambda: [16])
    reg_workers: int = 500  # fresh workers per level, registering into as many units
    notes: list[str] = field(default_factory=list)


QUICK = Plan(
    rounds=1,
    s1_concurrencies=[1, 16],
    s1_duration=1.5,
    s2_agents=[10, 100],
    s2_rate=2.0,
    s2_duration=1.0,
    s3_agents=[500],
    s3_hold=4.0,
    warmup=0.3,
    s3_interval=3.0,  # shorter than the browser's 6 s so every agent beats within the hold
    s4_concurrencies=[1, 16],
    s4_submissions=600,
    s4_warmup=20,
    full_concurrencies=[16],
    full_workers=300,
)
FULL = Plan(
    rounds=2,
    s1_concurrencies=[1, 4, 16, 64],
    s1_duration=5.0,
    s2_agents=[10, 100, 1000],
    s2_rate=1.0,
    s2_duration=5.0,
    s3_agents=[1000, 10000],
    s3_hold=14.0,
    warmup=1.0,
    s4_concurrencies=[1, 4, 16, 64],
    s4_submissions=2000,
    s4_warmup=100,
    full_concurrencies=[4, 16, 64],
    full_workers=2000,
    reg_concurrencies=[4, 16, 64],
    reg_workers=5000,
)


def scenario_kwargs(scenario: str, plan: Plan, http_url: str, ws_url: str) -> dict[str, Any]:
    if scenario == "S1":
        return {
            "base": http_url,
            "concurrencies": plan.s1_concurrencies,
            "duration": plan.s1_duration,
            "warmup": plan.warmup,
        }
    if scenario == "S2":
        return {
            "base": http_url,
            "ws_url": ws_url,
            "agent_counts": plan.s2_agents,
            "per_agent_rate": plan.s2_rate,
            "duration": plan.s2_duration,
            "warmup": plan.warmup,
        }
    if scenario == "S4":
        return {
            "base": http_url,
            "concurrencies": plan.s4_concurrencies,
            "per_level": plan.s4_submissions,
            "warmup_count": plan.s4_warmup,
        }
    return {
        "base": http_url,
        "ws_url": ws_url,
        "agent_counts": plan.s3_agents,
        "hold": plan.s3_hold,
        "interval": plan.s3_interval,
    }


def scenario_timeout(scenario: str, plan: Plan) -> float:
    if scenario == "S1":
        return 30 + len(plan.s1_concurrencies) * (plan.s1_duration + plan.warmup + 5)
    if scenario == "S2":
        return 60 + len(plan.s2_agents) * (2 * (plan.s2_duration + plan.warmup) + 15)
    if scenario == "S4":  # one level: generous (registration and submission at 50/s, drain)
        return 120 + 2 * (plan.s4_submissions + plan.s4_warmup) / 50
    return 60 + sum(k / 200 for k in plan.s3_agents) + len(plan.s3_agents) * (plan.s3_hold + 10)


def run_one(scenario: str, name: str, plan: Plan, workdir: Path) -> dict[str, Any]:
    server = {**SERVERS, **CLUSTERS}[name](workdir / name)
    server.start()
    backends: list[load.BackendProcess] = []
    try:
        if server.needs_backend:
            # A cluster's backend keeps a link to each of its routers (bench/cluster.py).
            urls = server.backend_urls if isinstance(server, OurCluster) else [server.ws_url]
            backends = [load.BackendProcess(url, f"{i}-") for i, url in enumerate(urls)]
        pids = server.pids if isinstance(server, OurCluster) else {"router": server.pid}
        for i, backend in enumerate(backends, 1):
            pids["backend" + (str(i) if i > 1 else "")] = backend.pid
        started = time.monotonic()
        results = load.run_in_child(
            scenario,
            scenario_timeout(scenario, plan),
            pids=pids,
            **scenario_kwargs(scenario, plan, server.http_url, server.ws_url),
        )
        elapsed = time.monotonic() - started
    finally:
        backend_stats = _summed([backend.stop() for backend in backends])
        server.stop()
    return {
        "results": results,
        "backend": backend_stats,
        "seconds": round(elapsed, 1),
    }


def _summed(stats: list[dict[str, int]]) -> dict[str, int]:
    """The backends' counts together (a cluster has one per router)."""
    total: dict[str, int] = {}
    for one in stats:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return total


def run_s4(
    name: str, plan: Plan, workdir: Path, postgres: PostgresServer | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One S4 run against ``name`` (see S4_VARIANTS): its results, and its durability check.

    Each concurrency level gets a freshly started daemon (and, embedded, a new database with
    just enough units: on PostgreSQL, a new database of the `postgres` server), so levels
    do not see each other's data.
    """
    results: list[dict[str, Any]] = []
    backends: list[dict[str, Any]] = []
    check: dict[str, Any] = {"server": name, "acknowledged": 0}
    seconds = 0.0
    for concurrency in plan.s4_concurrencies:
        level, backend_stats, level_check, elapsed = _run_s4_level(
            name, plan, concurrency, workdir, postgres
        )
        results += level
        backends.append(backend_stats)
        seconds += elapsed
        for key, value in level_check.items():
            check[key] = check.get(key, 0) + value
    run = {"results": results, "backend": backends, "seconds": round(seconds, 1)}
    return run, check


def _run_s4_level(
    name: str, plan: Plan, concurrency: int, workdir: Path, postgres: PostgresServer | None
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], float]:
    with fresh_database_for(name, postgres) as database:
        return _run_s4_on(name, plan, concurrency, workdir, postgres, database)


def _run_s4_on(
    name: str,
    plan: Plan,
    concurrency: int,
    workdir: Path,
    postgres: PostgresServer | None,
    database: str | None,
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], float]:
    server: Server
    units = plan.s4_submissions + plan.s4_warmup
    if name == "ours-embedded":
        server = OurEmbedded(workdir / name, units=units)
    elif name == "ours-embedded-pg":
        assert postgres is not None and database is not None
        server = OurEmbedded(workdir / name, units=units, database_url=postgres.url(database))
    else:
        server = OurRouter(workdir / name)
    server.start()
    backend = None
    kwargs = scenario_kwargs("S4", plan, server.http_url, server.ws_url)
    kwargs["concurrencies"] = [concurrency]
    if isinstance(server, OurEmbedded):
        kwargs["database"] = server.database
    try:
        if server.needs_backend:
            backend = load.BackendProcess(server.ws_url)
        pids = {"router": server.pid, "backend": backend.pid if backend else 0}
        started = time.monotonic()
        results = load.run_in_child("S4", scenario_timeout("S4", plan), pids=pids, **kwargs)
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # let the last packets reach the generator's backend
    finally:
        backend_stats = backend.stop() if backend else {}
        server.stop()
    acknowledged = [a for entry in results for a in entry.pop("acknowledged_agents")]
    check: dict[str, Any] = {"acknowledged": len(acknowledged)}
    if isinstance(server, OurEmbedded):
        check.update(verify_stored(server.config_path, acknowledged))
    else:
        check["delivered_to_backend"] = backend_stats.get("submitted", 0)
    return results, backend_stats, check, elapsed


def verify_stored(config_path: Path, acknowledged: list[str]) -> dict[str, Any]:
    """Every acknowledged submission, read back with `architect results` once the daemon
    (whose config is `config_path`) stopped."""
    done = subprocess.run(
        [sys.executable, "-m", "architect.cli", "results", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`architect results` failed ({done.returncode}): {done.stderr}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    stored = [row["agent_id"] for row in rows if row["kind"] == "unit"]
    expected = set(acknowledged)
    return {
        "stored": len(stored),
        "missing": len(expected - set(stored)),
        "duplicates": len(stored) - len(set(stored)),
        "unexpected": len(set(stored) - expected),
    }


def check_problems(check: dict[str, Any]) -> list[str]:
    """What a durability check found wrong (nothing, normally)."""
    if "stored" not in check:
        return []
    return [
        f"{check[key]} {key}" for key in ("missing", "duplicates", "unexpected") if check.get(key)
    ] + ([] if check["stored"] == check["acknowledged"] else ["stored != acknowledged"])


def _median_merge(runs: list[Any]) -> Any:
    """Merge repeated runs: numbers by median, dicts and lists element by element."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median_merge([r[k] for r in runs if k in r]) for k in first}
    if isinstance(first, list):
        return [_median_merge([r[i] for r in runs]) for i in range(len(first))]
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    middle = statistics.median(runs)
    if all(isinstance(r, int) for r in runs) and middle == int(middle):
        return int(middle)
    return round(middle, 3)


def run_s4_rounds(
    document: dict[str, Any], plan: Plan, servers: list[str], workdir: Path
) -> list[str]:
    """S4's rounds (alternating the variants); the failures."""
    return _ours_with_postgres(
        "S4", servers, lambda postgres: _s4_rounds(document, plan, workdir, postgres)
    )


def _ours_with_postgres(
    scenario: str, servers: list[str], rounds: Callable[[PostgresServer | None], list[str]]
) -> list[str]:
    """A scenario of our daemon only: its `rounds` beside a temporary PostgreSQL server (None
    if it cannot start: then the PostgreSQL variant fails, the others run); the failures."""
    if "ours" not in servers:
        print(f"{scenario}: skipped (it measures our daemon only; `ours` is not in --servers)")
        return []
    failures: list[str] = []
    postgres = None
    try:
        print(
            f"{scenario}: starting a temporary PostgreSQL server (tests/postgres.py)...", flush=True
        )
        postgres = start_server(durable=True)  # its commits wait for the disk, as SQLite's
    except PostgresUnavailable as e:
        print(f"  FAILED: {e}", file=sys.stderr, flush=True)
        failures.append(f"{scenario} ours-embedded-pg: {e}")
    try:
        failures += rounds(postgres)
    finally:
        if postgres is not None:
            postgres.stop()
    return failures


def run_full_scenario(
    document: dict[str, Any], plan: Plan, servers: list[str], workdir: Path
) -> list[str]:
    """FULL's rounds (bench/full_stack.py); the failures."""

    def rounds(postgres: PostgresServer | None) -> list[str]:
        return run_full_rounds(
            document,
            plan.rounds,
            plan.full_workers,
            plan.full_concurrencies,
            workdir,
            postgres,
            verify_stored,
            _median_merge,
        )

    return _ours_with_postgres("FULL", servers, rounds)


def run_reg_scenario(
    document: dict[str, Any], plan: Plan, servers: list[str], workdir: Path
) -> list[str]:
    """REG's rounds (bench/registration.py); the failures."""
    if "ours" not in servers:
        print("REG: skipped (it measures our daemon only; `ours` is not in --servers)")
        return []
    return run_reg_rounds(
        document,
        plan.rounds,
        plan.reg_workers,
        plan.reg_concurrencies,
        workdir,
        _median_merge,
    )


def _s4_rounds(
    document: dict[str, Any], plan: Plan, workdir: Path, postgres: PostgresServer | None
) -> list[str]:
    failures = []
    variants = [v for v in S4_VARIANTS if postgres is not None or v != "ours-embedded-pg"]
    per_variant: dict[str, list[Any]] = {name: [] for name in variants}
    checks = document.setdefault("s4_checks", [])
    for round_number in range(plan.rounds):
        order = variants if round_number % 2 == 0 else variants[::-1]
        for name in order:
            print(f"S4 round {round_number + 1}/{plan.rounds}: {name}...", flush=True)
            try:
                run, check = run_s4(name, plan, workdir, postgres)
            except (SetupError, RuntimeError, subprocess.SubprocessError) as e:
                print(f"  FAILED: {e}", file=sys.stderr, flush=True)
                failures.append(f"S4 {name}: {e}")
                continue
            check["round"] = round_number
            checks.append(check)
            problems = check_problems(check)
            if problems:
                failures.append(f"S4 {name}: durability check: {', '.join(problems)}: {check}")
            print(f"  done in {run['seconds']} s; check: {check}", flush=True)
            document["runs"].append(
                {"scenario": "S4", "server": name, "round": round_number, **run}
            )
            per_variant[name].append(run["results"])
    document["summary"]["S4"] = {
        name: _median_merge(runs) for name, runs in per_variant.items() if runs
    }
    return failures


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = "absent"
    try:
        import subprocess

        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "node": node,
        "kernel": platform.release(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def rereport(folder: Path) -> int:
    """Recompute the summary, table and plots from the raw runs of an earlier run."""
    document = json.loads((folder / "results.json").read_text())
    for scenario in {run["scenario"] for run in document["runs"]}:
        per_server: dict[str, list[Any]] = {}
        for run in document["runs"]:
            if run["scenario"] == scenario:
                per_server.setdefault(run["server"], []).append(run["results"])
        document["summary"][scenario] = {n: _median_merge(r) for n, r in per_server.items()}
    (folder / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    table = report.table(document)
    (folder / "table.md").write_text(table + "\n")
    report.plots(document, folder)
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Our router side by side with Mephisto's Node router and a bare echo floor.",
    )
    parser.add_argument("--quick", action="store_true", help="small and short (CI smoke test)")
    parser.add_argument("--output", type=Path, help="results folder (default bench/results/<time>)")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS), help="comma-separated")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated")
    parser.add_argument("--rounds", type=int, help="repetitions, alternating the server order")
    parser.add_argument(
        "--report", type=Path, metavar="DIR", help="only redo table and plots of DIR/results.json"
    )
    args = parser.parse_args(argv)
    if args.report:
        return rereport(args.report)

    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan.rounds = args.rounds
    servers = [s for s in args.servers.split(",") if s]
    scenarios = [s for s in args.scenarios.split(",") if s]
    for s in servers:
        if s not in SERVERS and s not in CLUSTERS:
            parser.error(f"unknown server {s!r}; choose from {[*ALL_SERVERS, *CLUSTERS]}")
    for s in scenarios:
        if s not in ALL_SCENARIOS:
            parser.error(f"unknown scenario {s!r}; choose from {ALL_SCENARIOS}")
    output = args.output or BENCH_DIR / "results" / time.strftime("%Y%m%d-%H%M%S")
    output = output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    workdir = output / "servers"

    load._raise_fd_limit()  # the servers inherit it
    began = time.monotonic()
    if "mephisto" in servers:
        print("setting up Mephisto's Node router (cached after the first run)...", flush=True)
        try:
            mephisto_router_dir()
        except SetupError as e:
            print(f"FAILED to set up Mephisto's Node router:\n{e}", file=sys.stderr)
            return 2

    document: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "plan": asdict(plan),
        "servers": servers,
        "runs": [],
        "summary": {},
    }
    failures = []
    for scenario in scenarios:
        if scenario == "S4":
            failures += run_s4_rounds(document, plan, servers, workdir)
            continue
        if scenario == "FULL":
            failures += run_full_scenario(document, plan, servers, workdir)
            continue
        if scenario == "REG":
            failures += run_reg_scenario(document, plan, servers, workdir)
            continue
        per_server: dict[str, list[Any]] = {name: [] for name in servers}
        for round_number in range(plan.rounds):
            order = servers if round_number % 2 == 0 else servers[::-1]
            for name in order:
                print(f"{scenario} round {round_number + 1}/{plan.rounds}: {name}...", flush=True)
                try:
                    run = run_one(scenario, name, plan, workdir)
                except (SetupError, RuntimeError) as e:
                    print(f"  FAILED: {e}", file=sys.stderr, flush=True)
                    failures.append(f"{scenario} {name}: {e}")
                    continue
                print(f"  done in {run['seconds']} s", flush=True)
                document["runs"].append(
                    {"scenario": scenario, "server": name, "round": round_number, **run}
                )
                per_server[name].append(run["results"])
        document["summary"][scenario] = {
            name: _median_merge(runs) for name, runs in per_server.items() if runs
        }

    document["seconds"] = round(time.monotonic() - began, 1)
    document["failures"] = failures
    (output / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    table = report.table(document)
    (output / "table.md").write_text(table + "\n")
    plots = report.plots(document, output)
    print()
    print(table)
    print()
    print(f"results: {output / 'results.json'}")
    for plot in plots:
        print(f"plot: {plot}")
    print(f"total: {document['seconds']} s")
    if failures:
        print("FAILURES:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0
