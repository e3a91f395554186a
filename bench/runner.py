"""The runner: starts each server in turn, drives the scenarios, writes JSON, table and plots."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import load, report
from bench.servers import BENCH_DIR, SERVERS, SetupError, mephisto_router_dir

ALL_SERVERS = ["ours", "mephisto", "floor"]
ALL_SCENARIOS = ["S1", "S2", "S3", "S4"]
S4_MISSING = (
    "not available yet: S4 needs our backend and its SQLite storage (embedded mode), "
    "which are not built yet"
)


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
            "ws_url": ws_url,
            "agent_counts": plan.s2_agents,
            "per_agent_rate": plan.s2_rate,
            "duration": plan.s2_duration,
            "warmup": plan.warmup,
        }
    return {
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
    return 60 + sum(k / 200 for k in plan.s3_agents) + len(plan.s3_agents) * (plan.s3_hold + 10)


def run_one(scenario: str, name: str, plan: Plan, workdir: Path) -> dict[str, Any]:
    server = SERVERS[name](workdir / name)
    server.start()
    backend = None
    try:
        if server.needs_backend:
            backend = load.BackendProcess(server.ws_url)
        pids = {"router": server.pid, "backend": backend.pid if backend else 0}
        started = time.monotonic()
        results = load.run_in_child(
            scenario,
            scenario_timeout(scenario, plan),
            pids=pids,
            **scenario_kwargs(scenario, plan, server.http_url, server.ws_url),
        )
        elapsed = time.monotonic() - started
    finally:
        backend_stats = backend.stop() if backend else {}
        server.stop()
    return {
        "results": results,
        "backend": backend_stats,
        "seconds": round(elapsed, 1),
    }


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
        if s not in SERVERS:
            parser.error(f"unknown server {s!r}; choose from {ALL_SERVERS}")
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
            document["summary"]["S4"] = {"status": S4_MISSING}
            print(f"S4: {S4_MISSING}", flush=True)
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
