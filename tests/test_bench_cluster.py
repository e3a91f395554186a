"""`python -m bench --quick --servers ours-lb2 --scenarios S2`: two routers, redis-server
and haproxy (bench/cluster.py) run end to end, every update echoed through haproxy.

A smoke test of the harness, never a speed threshold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.load_balancers import HAPROXY
from tests.redis_server import apt_install, ensure_redis_server

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_two_routers_behind_haproxy(tmp_path: Path) -> None:
    ensure_redis_server()
    apt_install("haproxy", HAPROXY)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--quick", "--output", str(tmp_path)),
            *("--servers", "ours-lb2", "--scenarios", "S2"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["failures"] == [], output
    for entry in document["summary"]["S2"]["ours-lb2"]:
        assert entry["offered"]["lost"] == 0, entry
        assert entry["closed"]["echo_per_s"] > 0, entry
        assert {"router", "router2", "backend", "backend2"} <= set(entry["closed"]["cpu"])
    [run] = document["runs"]
    assert run["backend"]["echoed"] > 0 and run["backend"]["registered"] > 0
