"""The side-by-side table (markdown) and one matplotlib PNG per scenario."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.full_stack import full_table
from bench.registration import reg_table

COLUMNS = ["floor", "ours", "mephisto", "ours-lb1", "ours-lb2"]  # lb: bench/cluster.py
# S4 is ours only: the embedded daemon storing to SQLite, then to PostgreSQL, beside the
# router alone (mode = off) whose backend (the generator's) takes each submission without
# storing it.
S4_COLUMNS = {
    "ours-embedded": "embedded (SQLite)",
    "ours-embedded-pg": "embedded (PostgreSQL)",
    "ours": "off (no storage)",
}
BUSY = 0.9  # a process using this much of a core is probably the bottleneck

Row = tuple[str, str, dict[str, float | None]]  # label, better ("higher"/"lower"), values


def _rows(summary: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []

    def pick(scenario: str, key: str, value: Any, getter: Callable[[dict[str, Any]], Any]) -> dict:
        values: dict[str, float | None] = {}
        for server, entries in summary.get(scenario, {}).items():
            found = next((e for e in entries if e.get(key) == value), None)
            values[server] = getter(found) if found else None
        return values

    s1 = summary.get("S1", {})
    for c in sorted({e["concurrency"] for entries in s1.values() for e in entries}):
        rows.append(
            (
                f"S1 c={c} registrations/s",
                "higher",
                pick("S1", "concurrency", c, lambda e: e["throughput_per_s"]),
            )
        )
        rows.append(
            (f"S1 c={c} p50 ms", "lower", pick("S1", "concurrency", c, lambda e: e["p50_ms"]))
        )
        rows.append(
            (f"S1 c={c} p99 ms", "lower", pick("S1", "concurrency", c, lambda e: e["p99_ms"]))
        )
    s2 = summary.get("S2", {})
    for n in sorted({e["agents"] for entries in s2.values() for e in entries}):
        offered = next(
            e["offered"]["offered_per_s"] for es in s2.values() for e in es if e["agents"] == n
        )
        rows.append(
            (
                f"S2 N={n} @{offered:g}/s RTT p50 ms",
                "lower",
                pick("S2", "agents", n, lambda e: e["offered"]["p50_ms"]),
            )
        )
        rows.append(
            (
                f"S2 N={n} @{offered:g}/s RTT p99 ms",
                "lower",
                pick("S2", "agents", n, lambda e: e["offered"]["p99_ms"]),
            )
        )
        rows.append(
            (
                f"S2 N={n} closed-loop echoes/s",
                "higher",
                pick("S2", "agents", n, lambda e: e["closed"]["echo_per_s"]),
            )
        )
        rows.append(
            (
                f"S2 N={n} closed-loop RTT p50 ms",
                "lower",
                pick("S2", "agents", n, lambda e: e["closed"]["p50_ms"]),
            )
        )
    s3 = summary.get("S3", {})
    for k in sorted({e["agents"] for entries in s3.values() for e in entries}):
        rows.append(
            (
                f"S3 K={k} RSS per connection kB",
                "lower",
                pick("S3", "agents", k, lambda e: e["rss_per_conn_kb"]),
            )
        )
        rows.append(
            (f"S3 K={k} RSS total MB", "lower", pick("S3", "agents", k, lambda e: e["rss_mb"]))
        )
        rows.append(
            (
                f"S3 K={k} heartbeat RTT p99 ms",
                "lower",
                pick("S3", "agents", k, lambda e: e["p99_ms"]),
            )
        )
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _busy_notes(document: dict[str, Any]) -> list[str]:
    """Where the generator, its backend or a router used a whole core (likely the limit)."""
    notes = []

    def visit(scenario: str, server: str, label: str, cpu: dict[str, float]) -> None:
        busy = [f"{role} {use:.0%}" for role, use in cpu.items() if use >= BUSY]
        if busy:
            notes.append(f"{scenario} {label}, {server}: " + ", ".join(busy))

    for scenario, servers in document.get("summary", {}).items():
        if not isinstance(servers, dict) or "status" in servers:
            continue
        for server, entries in servers.items():
            for e in entries:
                if scenario in ("S1", "S4", "FULL", "REG"):
                    visit(scenario, server, f"c={e['concurrency']}", e["cpu"])
                elif scenario == "S2":
                    visit(scenario, server, f"N={e['agents']} fixed rate", e["offered"]["cpu"])
                    visit(scenario, server, f"N={e['agents']} closed loop", e["closed"]["cpu"])
                else:
                    visit(scenario, server, f"K={e['agents']}", e["cpu"])
    return notes


def table(document: dict[str, Any]) -> str:
    summary = document.get("summary", {})
    columns = [c for c in COLUMNS if c in document.get("servers", COLUMNS)]
    head = ["measure", "better", *columns, "ours/mephisto"]
    lines = [
        f"Mode: {document.get('mode')}; rounds: {document.get('plan', {}).get('rounds')} "
        "(medians across rounds, servers alternated)",
    ]
    rows = _rows(summary)
    if rows:
        lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for label, better, values in rows:
        ours, theirs = values.get("ours"), values.get("mephisto")
        # RSS growth can be negative when a garbage collector runs: no ratio for that
        usable = ours is not None and theirs is not None and ours >= 0 and theirs > 0
        ratio = f"{ours / theirs:.2f}" if usable and ours is not None and theirs else "n/a"
        cells = [label, better, *(_fmt(values.get(c)) for c in columns), ratio]
        lines.append("| " + " | ".join(cells) + " |")
    if summary.get("S4"):
        lines += ["", *s4_table(document)]
    if summary.get("FULL"):
        lines += ["", *full_table(document)]
    if summary.get("REG"):
        lines += ["", *reg_table(document)]
    notes = _busy_notes(document)
    if notes:
        lines += ["", f"Processes at >= {BUSY:.0%} of a core (the likely limit there):"]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def _s4_rows(s4: dict[str, list[dict[str, Any]]]) -> list[Row]:
    rows: list[Row] = []

    def pick(c: int, getter: Callable[[dict[str, Any]], Any]) -> dict[str, float | None]:
        values: dict[str, float | None] = {}
        for server, entries in s4.items():
            found = next((e for e in entries if e["concurrency"] == c), None)
            values[server] = getter(found) if found else None
        return values

    for c in sorted({e["concurrency"] for entries in s4.values() for e in entries}):
        rows.append(
            (
                f"S4 c={c} submissions/s acknowledged",
                "higher",
                pick(c, lambda e: e["throughput_per_s"]),
            )
        )
        rows.append((f"S4 c={c} p50 ms", "lower", pick(c, lambda e: e["p50_ms"])))
        rows.append((f"S4 c={c} p99 ms", "lower", pick(c, lambda e: e["p99_ms"])))
        rows.append(
            (
                f"S4 c={c} submissions/s until all stored",
                "higher",
                pick(c, lambda e: e.get("durable_per_s")),
            )
        )
        rows.append(
            (
                f"S4 c={c} registrations/s before (c=16, not timed with S4)",
                "higher",
                pick(c, lambda e: e["registration_per_s"]),
            )
        )
    return rows


def s4_table(document: dict[str, Any]) -> list[str]:
    """S4's own table: our daemon storing submissions beside it not storing them."""
    s4 = document["summary"]["S4"]
    columns = [c for c in S4_COLUMNS if c in s4]
    head = [
        "measure",
        "better",
        *(S4_COLUMNS[c] for c in columns),
        "stored/not stored",
        "PostgreSQL/SQLite",
    ]
    lines = [
        "S4 `/submit_task`, ours only. *embedded (SQLite)*: `[backend] mode = embedded`, the"
        " daemon's backend committing each submission to SQLite (WAL, synchronous = FULL)."
        " *embedded (PostgreSQL)*: the same daemon with `[storage] url`, committing to a"
        " local PostgreSQL server (a temporary cluster, its commits flushed to disk as"
        " SQLite's are). *off (no storage)*: the router alone, the generator's backend taking"
        " each submission without storing it. Every router acknowledges a submission once it"
        " holds it; *until all stored* counts from the first measured submission until the"
        " last one is committed (polled from the database). Each concurrency level starts a"
        " fresh daemon (and database).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for label, better, values in _s4_rows(s4):
        stored, plain = values.get("ours-embedded"), values.get("ours")
        on_pg = values.get("ours-embedded-pg")
        ratio = f"{stored / plain:.2f}" if stored is not None and plain else "n/a"
        engines = f"{on_pg / stored:.2f}" if on_pg is not None and stored else "n/a"
        cells = [label, better, *(_fmt(values.get(c)) for c in columns), ratio, engines]
        lines.append("| " + " | ".join(cells) + " |")
    checks = document.get("s4_checks") or []
    if checks:
        lines += ["", "S4 durability checks (`architect results` read after each embedded run):"]
        for check in checks:
            if "stored" not in check:
                lines.append(
                    f"- round {check['round'] + 1}, {check['server']} (not stored):"
                    f" {check['acknowledged']} acknowledged,"
                    f" {check.get('delivered_to_backend')} reached the generator's backend"
                )
            else:
                lines.append(
                    f"- round {check['round'] + 1}, {check['server']}:"
                    f" {check['acknowledged']} acknowledged, {check['stored']} stored,"
                    f" {check['missing']} missing, {check['duplicates']} duplicates"
                )
    return lines


def plots(document: dict[str, Any], output: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = document.get("summary", {})
    servers = [c for c in COLUMNS if c in document.get("servers", COLUMNS)]
    colors = {
        "floor": "#999999",
        "ours": "#1f77b4",
        "mephisto": "#d62728",
        "ours-lb1": "#2ca02c",
        "ours-lb2": "#98df8a",
    }
    written = []
    title = f"({document.get('mode')} run)"

    def bars(ax: Any, keys: list[Any], series: dict[str, list[float]], ylabel: str) -> None:
        width = 0.8 / max(1, len(series))
        for i, (server, values) in enumerate(series.items()):
            xs = [x + i * width for x in range(len(keys))]
            ax.bar(xs, values, width, label=server, color=colors.get(server))
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(keys))])
        ax.set_xticklabels([str(k) for k in keys])
        ax.set_ylabel(ylabel)
        ax.legend()

    def series(scenario: str, key: str, keys: list[Any], get: Callable[[dict], float]) -> dict:
        out = {}
        for server in servers:
            entries = summary.get(scenario, {}).get(server)
            if entries:
                by_key = {e[key]: e for e in entries}
                out[server] = [get(by_key[k]) if k in by_key else 0.0 for k in keys]
        return out

    if summary.get("S1"):
        keys = sorted({e["concurrency"] for es in summary["S1"].values() for e in es})
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        bars(
            a,
            keys,
            series("S1", "concurrency", keys, lambda e: e["throughput_per_s"]),
            "registrations/s",
        )
        a.set_xlabel("concurrent /request_agent clients")
        bars(b, keys, series("S1", "concurrency", keys, lambda e: e["p99_ms"]), "p99 latency (ms)")
        b.set_xlabel("concurrent /request_agent clients")
        fig.suptitle(f"S1 registration round trips through the backend {title}")
        written.append(_save(fig, output / "s1_registration.png"))
    if summary.get("S2"):
        keys = sorted({e["agents"] for es in summary["S2"].values() for e in es})
        fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4))
        bars(
            a,
            keys,
            series("S2", "agents", keys, lambda e: e["offered"]["p50_ms"]),
            "RTT p50 (ms), fixed rate",
        )
        bars(
            b,
            keys,
            series("S2", "agents", keys, lambda e: e["offered"]["p99_ms"]),
            "RTT p99 (ms), fixed rate",
        )
        bars(
            c,
            keys,
            series("S2", "agents", keys, lambda e: e["closed"]["echo_per_s"]),
            "closed-loop echoes/s",
        )
        for ax in (a, b, c):
            ax.set_xlabel("agents")
        fig.suptitle(f"S2 live updates echoed by the backend {title}")
        written.append(_save(fig, output / "s2_live.png"))
    if summary.get("S3"):
        keys = sorted({e["agents"] for es in summary["S3"].values() for e in es})
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        bars(
            a,
            keys,
            series("S3", "agents", keys, lambda e: e["rss_per_conn_kb"]),
            "router RSS per connection (kB)",
        )
        bars(b, keys, series("S3", "agents", keys, lambda e: e["p99_ms"]), "heartbeat RTT p99 (ms)")
        for ax in (a, b):
            ax.set_xlabel("idle agents heartbeating every 6 s")
        fig.suptitle(f"S3 idle capacity {title}")
        written.append(_save(fig, output / "s3_capacity.png"))
    s4 = summary.get("S4")
    if s4:
        keys = sorted({e["concurrency"] for es in s4.values() for e in es})

        def s4_series(get: Callable[[dict], float | None]) -> dict[str, list[float]]:
            out = {}
            for server, label in S4_COLUMNS.items():
                by_c = {e["concurrency"]: e for e in s4.get(server, [])}
                if by_c:
                    out[label] = [float(get(by_c[k]) or 0.0) if k in by_c else 0.0 for k in keys]
            return out

        colors.update(
            {
                "embedded (SQLite)": "#1f77b4",
                "embedded (PostgreSQL)": "#9467bd",
                "off (no storage)": "#aec7e8",
            }
        )
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        rates = s4_series(lambda e: e["throughput_per_s"])
        durable = s4_series(lambda e: e.get("durable_per_s"))
        for engine, color in (("SQLite", "#2ca02c"), ("PostgreSQL", "#98df8a")):
            until = durable.get(f"embedded ({engine})")
            if until:
                rates[f"{engine}, until all stored"] = until
                colors[f"{engine}, until all stored"] = color
        bars(a, keys, rates, "submissions/s")
        a.set_xlabel("concurrent /submit_task clients")
        bars(b, keys, s4_series(lambda e: e["p99_ms"]), "p99 latency (ms)")
        b.set_xlabel("concurrent /submit_task clients")
        fig.suptitle(f"S4 /submit_task, stored (SQLite, PostgreSQL) or not (ours) {title}")
        written.append(_save(fig, output / "s4_submissions.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
