"""Issue-level check: 50 simulated workers hammer /request_agent for 200 units at once.

Every unit is handed out at most once, every limit holds, every refusal is worded as
docs/protocol.md says, and every acknowledged submission is in the database and in
`architect results`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.web.client import HTTPConnectionPool

from architect.config import load_config
from architect.protocol import FailureReason
from tests.clients import Browsers, reactor
from tests.daemon import Daemons

# Each embedded daemon here runs once on SQLite, once on PostgreSQL (conftest).
DAEMONS_ON_EVERY_ENGINE = True

pytestmark = pytest.mark.slow

UNITS, WORKERS, MAX_UNITS, CONCURRENT = 200, 50, 5, 2


def write_config(tmp_path: Path) -> Path:
    (tmp_path / "units.jsonl").write_text(
        "".join(json.dumps({"n": n}) + "\n" for n in range(UNITS))
    )
    config = tmp_path / "router.ini"
    config.write_text(
        "[router]\nlisten = tcp:0:interface=127.0.0.1\n"
        "[backend]\nmode = embedded\n"
        "[storage]\ndata_dir = data\n"
        "[task]\nname = hammer\nunits = units.jsonl\n"
        f"maximum_units_per_worker = {MAX_UNITS}\nallowed_concurrent = {CONCURRENT}\n"
    )
    return config


@pytest_twisted.ensureDeferred
async def test_fifty_workers_two_hundred_units(tmp_path: Path, daemons: Daemons) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    daemon = await daemons.start(config, ready=False)
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 64
    refusals: Counter[str] = Counter()
    submitted: list[str] = []
    last_refusal: dict[str, str] = {}
    try:
        await daemon.when_ready()
        base = daemon.url

        browsers = Browsers(pool)  # each worker's own

        async def post(worker: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
            code, answer = await browsers.of_worker(worker).post_json(base + path, body)
            assert code == 200, answer
            return dict(answer)

        async def register(worker: str, n: int) -> str | None:
            """The agent id given, or None (the refusal is counted)."""
            provider = {
                "worker_name": worker,
                "agent_registration_id": f"{n}-{worker}",
                "assignment_id": str(n),
                "provider_type": "mock",
            }
            data = (await post(worker, "/request_agent", {"provider_data": provider}))["data"]
            if data["agent_id"] is None:
                refusals[data["failure_reason"]] += 1
                last_refusal[worker] = data["failure_reason"]
                return None
            agent_id: str = data["agent_id"]
            return agent_id

        async def submit(worker: str, agent_id: str) -> None:
            body = {"USED_AGENT_ID": agent_id, "final_data": {"by": worker}}
            await post(worker, "/submit_task", body)
            submitted.append(agent_id)

        async def worker_loop(worker: str) -> None:
            # The page's config first (it brings the browser its session cookie), then a
            # burst past allowed_concurrent, then one at a time until refused for good.
            response = await browsers.of_worker(worker).http.get(base + "/task_config.json")
            assert response.code == 200
            await response.content()
            burst = [ensureDeferred(register(worker, i)) for i in range(CONCURRENT + 1)]
            for agent_id in await gatherResults(burst):
                if agent_id is not None:
                    await submit(worker, agent_id)
            n = len(burst)
            while last_refusal.get(worker) not in (FailureReason.MAX_UNITS, FailureReason.NO_WORK):
                agent_id = await register(worker, n)
                n += 1
                if agent_id is not None:
                    await submit(worker, agent_id)

        await gatherResults([ensureDeferred(worker_loop(f"w{i}")) for i in range(WORKERS)])
        await daemon.settled()
        agents = await daemon.database.list_agents()
        units = await daemon.database.list_units(daemon.task_run_id)
    finally:
        await pool.closeCachedConnections()
        await daemons.stop(daemon)

    # Every unit at most once, and all of them handed out (250 asks for 200 units).
    held = [a.unit_id for a in agents if a.unit_id is not None]
    assert len(held) == len(set(held)) == UNITS
    assert all(u.status == "completed" for u in units)
    # Every limit held.
    per_worker = Counter(a.worker_id for a in agents)
    assert max(per_worker.values()) <= MAX_UNITS
    # Every refusal worded as it should be, and only the expected reasons.
    assert set(refusals) <= {
        FailureReason.TOO_MANY_CONCURRENT,
        FailureReason.MAX_UNITS,
        FailureReason.NO_WORK,
    }
    assert refusals[FailureReason.NO_WORK] > 0 and refusals[FailureReason.MAX_UNITS] > 0
    assert refusals[FailureReason.TOO_MANY_CONCURRENT] > 0
    # Every acknowledged submission is stored, once, and `architect results` shows it.
    assert len(submitted) == UNITS
    if daemon.config.storage.url is not None:  # the command reads the daemon's database
        config_path.write_text(
            config_path.read_text().replace(
                "[storage]\n", f"[storage]\nurl = {daemon.config.storage.url}\n"
            )
        )
    out = subprocess.run(
        [str(Path(sys.executable).parent / "architect"), "results", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(r["agent_id"] for r in rows) == sorted(submitted)
    assert all(r["data"]["by"] == r["worker_name"] for r in rows)
