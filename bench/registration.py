"""REG: registration alone, our embedded daemon beside the router alone.

Fresh workers register through `/request_agent`, ``concurrency`` at a time, into a run of
exactly as many units (load.registrations), on a fresh daemon at each level:
``ours-embedded`` registers them into SQLite (each acknowledged once committed), ``ours``
is the router alone with the generator's backend answering each registration at once
(what the router itself costs). Afterwards the embedded database must hold one agent per
registration.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import load
from bench.full_stack import database_counts
from bench.servers import OurEmbedded, OurRouter, Server, SetupError

VARIANTS = ["ours-embedded", "ours"]


def run_level(name: str, workers: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """One level against `name` (VARIANTS) on a fresh daemon: its result (with `agents`, the
    database's count, for the embedded variant)."""
    server: Server
    if name == "ours-embedded":
        server = OurEmbedded(workdir / f"reg-{name}-{concurrency}", units=workers)
    else:
        server = OurRouter(workdir / f"reg-{name}-{concurrency}")
    server.start()
    backend = None
    try:
        if server.needs_backend:
            backend = load.BackendProcess(server.ws_url)
        pids = {"router": server.pid, "backend": backend.pid if backend else 0}
        [result] = load.run_in_child(
            "REG",
            120 + workers / 20,
            base=server.http_url,
            workers=workers,
            concurrency=concurrency,
            pids=pids,
        )
    finally:
        if backend is not None:
            backend.stop()
        server.stop()
    if isinstance(server, OurEmbedded):
        result["agents"] = database_counts(server.database)["agents"]
    return result


def run_reg_rounds(
    document: dict[str, Any],
    rounds: int,
    workers: int,
    concurrencies: list[int],
    workdir: Path,
    median: Any,
) -> list[str]:
    """REG's rounds, the variants alternated; the failures (a level that failed, or an
    embedded database that does not hold one agent per registration)."""
    failures: list[str] = []
    per_variant: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in VARIANTS}
    for round_number in range(rounds):
        order = VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]
        for name in order:
            print(f"REG round {round_number + 1}/{rounds}: {name}...", flush=True)
            results = []
            for concurrency in concurrencies:
                try:
                    result = run_level(name, workers, concurrency, workdir)
                except (SetupError, RuntimeError, subprocess.SubprocessError) as e:
                    print(f"  FAILED: {e}", file=sys.stderr, flush=True)
                    failures.append(f"REG {name} c={concurrency}: {e}")
                    continue
                if result.get("agents", workers) != workers or result["errors"]:
                    failures.append(
                        f"REG {name} c={concurrency}: {result.get('agents')} agents stored,"
                        f" {result['errors']} errors, for {workers} registrations"
                    )
                print(f"  c={concurrency}: {result['registrations_per_s']:,.0f}/s", flush=True)
                results.append(result)
            document["runs"].append(
                {"scenario": "REG", "server": name, "round": round_number, "results": results}
            )
            per_variant[name].append(results)
    document["summary"]["REG"] = {name: median(runs) for name, runs in per_variant.items() if runs}
    return failures


def reg_table(document: dict[str, Any]) -> list[str]:
    """REG's table: one row per concurrency (medians across rounds)."""
    summary = document.get("summary", {}).get("REG") or {}
    embedded, alone = summary.get("ours-embedded") or [], summary.get("ours") or []
    if not embedded and not alone:
        return []
    workers = (embedded or alone)[0]["workers"]
    lines = [
        f"REG (registration alone: {workers:,} fresh workers into a run of {workers:,} units,"
        " a fresh daemon per level):",
        "",
        "| c | embedded (SQLite) /s | router alone /s | embedded / alone"
        " | embedded p50 / p99 ms | CPU ms per registration, embedded / alone | agents stored |",
        "|---|---|---|---|---|---|---|",
    ]
    by_level = {entry["concurrency"]: entry for entry in alone}
    for entry in embedded:
        other = by_level.get(entry["concurrency"])
        ratio = (
            f"{entry['registrations_per_s'] / other['registrations_per_s']:.2f}" if other else "n/a"
        )
        rate = f"{other['registrations_per_s']:,.0f}" if other else "n/a"
        cpu = f"{_cpu_ms(entry):.2f} / {_cpu_ms(other):.2f}" if other else f"{_cpu_ms(entry):.2f}"
        latency = entry["latency"]
        lines.append(
            f"| {entry['concurrency']} | {entry['registrations_per_s']:,.0f} | {rate} | {ratio}"
            f" | {latency['p50_ms']:.1f} / {latency['p99_ms']:.1f} | {cpu}"
            f" | {entry.get('agents', 'n/a')} |"
        )
    return lines


def _cpu_ms(entry: dict[str, Any]) -> float:
    """The daemon's CPU per registration (the router's, for the router alone), ms."""
    return 1000 * entry["cpu"].get("router", 0.0) / max(entry["registrations_per_s"], 1e-9)
