"""`python -m bench --quick` runs end to end against every server and gives sane numbers.

REG (ours only) registers fresh workers alone, embedded and through the router alone.
S4 and FULL (ours only) must also show that every acknowledged submission reached the database
once, on SQLite and on PostgreSQL (a temporary server, tests/postgres.py), and FULL in remote
mode too (the router and our backend daemon).

This is a smoke test of the harness, never a speed threshold. It sets up Mephisto's Node
router itself on first use (PyPI wheel + npm); if that fails, the test fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SERVERS = ["ours", "mephisto", "floor"]


def check_latency(entry: dict, where: str) -> None:
    assert entry["count"] > 0, f"{where}: no samples"
    assert 0 < entry["p50_ms"] <= entry["p99_ms"] <= entry["max_ms"], f"{where}: {entry}"


def test_quick_bench(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["failures"] == [], output
    summary = document["summary"]
    check_s4(document)
    check_full(document)
    check_reg(document)
    for server in SERVERS:
        s1 = summary["S1"][server]
        assert [e["concurrency"] for e in s1] == document["plan"]["s1_concurrencies"]
        for e in s1:
            assert e["throughput_per_s"] > 0, (server, e)
            assert e["errors"] == 0, (server, e)
            check_latency(e, f"S1 {server} c={e['concurrency']}")
        s2 = summary["S2"][server]
        assert [e["agents"] for e in s2] == document["plan"]["s2_agents"]
        for e in s2:
            check_latency(e["offered"], f"S2 {server} N={e['agents']} fixed rate")
            check_latency(e["closed"], f"S2 {server} N={e['agents']} closed loop")
            assert e["closed"]["echo_per_s"] > 0, (server, e)
        s3 = summary["S3"][server]
        assert [e["agents"] for e in s3] == document["plan"]["s3_agents"]
        for e in s3:
            check_latency(e, f"S3 {server} K={e['agents']}")
            assert e["rss_mb"] > 0, (server, e)
            assert e["unanswered"] == 0, (server, e)
    for name in ("s1_registration.png", "s2_live.png", "s3_capacity.png", "s4_submissions.png"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "table.md").read_text()
    assert "ours/mephisto" in table
    assert "stored/not stored" in table
    assert "PostgreSQL/SQLite" in table
    assert "FULL (register, submit, stored" in table
    assert "REG (registration alone" in table


def check_reg(document: dict) -> None:
    """REG (ours only): registration alone, embedded (every agent in the database) and the
    router alone beside it."""
    plan = document["plan"]
    reg = document["summary"]["REG"]
    assert sorted(reg) == ["ours", "ours-embedded"], reg
    for variant, entries in reg.items():
        assert [e["concurrency"] for e in entries] == plan["reg_concurrencies"]
        for e in entries:
            where = f"REG {variant} c={e['concurrency']}"
            assert e["errors"] == 0 and e["registrations_per_s"] > 0, (where, e)
            assert e["latency"]["count"] == plan["reg_workers"] - 1, (where, e)
            check_latency(e["latency"], where)
            if variant == "ours-embedded":
                assert e["agents"] == plan["reg_workers"], (where, e)


def check_full(document: dict) -> None:
    """FULL (ours only): each variant's whole path measured, and its database read back."""
    plan = document["plan"]
    full = document["summary"]["FULL"]
    assert sorted(full) == ["ours-embedded", "ours-embedded-pg", "ours-remote"], full
    for variant, entries in full.items():
        assert [e["concurrency"] for e in entries] == plan["full_concurrencies"]
        for e in entries:
            where = f"FULL {variant} c={e['concurrency']}"
            assert e["check_ok"] and e["errors"] == 0, (where, e)
            assert 0 < e["stored_per_s"] <= e["submissions_per_s"] * 1.01, (where, e)
            assert e["registrations_per_s"] > 0, (where, e)
            check_latency(e["registration"], f"{where} registration")
            check_latency(e["submission"], f"{where} submission")
    checks = document["full_checks"]
    assert len(checks) == len(full) * len(plan["full_concurrencies"]) * plan["rounds"]
    for check in checks:
        workers = plan["full_workers"]
        counted = (check["agents"], check["units_completed"], check["unit_submissions"])
        assert counted == (workers, workers, workers), check
        assert (check["acknowledged"], check["stored"]) == (workers, workers), check
        assert check["missing"] == check["duplicates"] == check["unexpected"] == 0, check


def check_s4(document: dict) -> None:
    """S4 (ours only): the embedded daemon storing to SQLite, to PostgreSQL, and the router
    alone beside them."""
    plan = document["plan"]
    s4 = document["summary"]["S4"]
    embedded = ["ours-embedded", "ours-embedded-pg"]
    assert sorted(s4) == ["ours", *embedded], s4
    for variant, entries in s4.items():
        assert [e["concurrency"] for e in entries] == plan["s4_concurrencies"]
        for e in entries:
            where = f"S4 {variant} c={e['concurrency']}"
            assert e["errors"] == 0, (where, e)
            assert e["submissions"] == plan["s4_submissions"], (where, e)
            assert e["throughput_per_s"] > 0, (where, e)
            assert e["registration_per_s"] > 0, (where, e)
            check_latency(e, where)
            assert "acknowledged_agents" not in e  # the long list is not kept in the summary
            if variant in embedded:
                # counted until the last acknowledged submission was in the database
                assert e["durable_per_s"] > 0, (where, e)
                assert e["all_stored_s"] > 0, (where, e)
            else:
                assert "durable_per_s" not in e, (where, e)
    # Every acknowledged submission was stored exactly once (read back by `architect results`).
    per_run = len(plan["s4_concurrencies"]) * (plan["s4_submissions"] + plan["s4_warmup"])
    checks = {c["server"]: c for c in document["s4_checks"]}
    for variant in embedded:
        stored = checks[variant]
        assert stored["acknowledged"] == stored["stored"] == per_run, stored
        assert stored["missing"] == stored["duplicates"] == stored["unexpected"] == 0, stored
    plain = checks["ours"]
    assert plain["acknowledged"] == plain["delivered_to_backend"] == per_run, plain
