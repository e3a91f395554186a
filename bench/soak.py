"""The soak benchmark: many workers pass through one daemon; does its memory stay flat?

    python -m bench.soak --agents 50000 --output bench/results/soak

Our embedded daemon (router, backend, SQLite) runs as its own process. Workers, a few
dozen at a time, each register, open the live socket (`alive`, a heartbeat answered),
submit, see `completed`, and leave. Every `--every` workers the daemon's resident
memory (RSS) is read from /proc. After the last, the daemon is left idle for the
status retention and read once more. Memory should follow the workers *working*
(a few dozen here), not all workers ever seen.

Not a timed test: the figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import packet, rss_bytes
from bench.servers import OurEmbedded

MIB = 1024 * 1024


class SoakDaemon(OurEmbedded):
    """The embedded daemon with its finished agents kept `retention` seconds."""

    name = "soak"

    def __init__(self, workdir: Path, units: int, retention: float) -> None:
        super().__init__(workdir, units)
        self.retention = retention

    def config_text(self) -> str:
        text = super().config_text()
        return text.replace("[router]\n", f"[router]\nstatus_retention = {self.retention}\n", 1)


async def one_worker(session: aiohttp.ClientSession, base: str, ws_url: str, n: int) -> None:
    worker = f"soak-w{n}"
    provider = {
        "worker_name": worker,
        "agent_registration_id": f"a{n}-{worker}",
        "assignment_id": f"a{n}",
        "provider_type": "mock",
    }
    for _ in range(240):  # a daemon loading many units answers 503 until its backend is up
        async with session.post(base + "/request_agent", json={"provider_data": provider}) as r:
            answer = await r.json(content_type=None)
        if r.status != 503:
            break
        await asyncio.sleep(0.5)
    agent_id = (answer.get("data") or {}).get("agent_id")
    if r.status != 200 or not agent_id:
        raise RuntimeError(f"registration of {worker} failed: {r.status} {answer}")
    async with session.ws_connect(ws_url, max_msg_size=0, heartbeat=None) as ws:
        await ws.send_str(packet("alive", agent_id))
        await ws.send_str(packet("heartbeat", agent_id))
        await _until(ws, lambda p: p.get("packet_type") == "heartbeat")
        body = {"USED_AGENT_ID": agent_id, "final_data": {"answer": n, "note": "soak " * 20}}
        async with session.post(base + "/submit_task", json=body) as r:
            if r.status != 200:
                raise RuntimeError(f"submission of {worker} failed: {r.status} {await r.text()}")
        await _until(ws, lambda p: (p.get("data") or {}).get("status") == "completed")


async def _until(ws: aiohttp.ClientWebSocketResponse, wanted: Any, timeout: float = 30) -> None:
    async def read() -> None:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT and wanted(json.loads(message.data)):
                return
        raise RuntimeError("the socket closed first")

    await asyncio.wait_for(read(), timeout)


async def soak(
    daemon: SoakDaemon, agents: int, every: int, concurrency: int
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    numbers = iter(range(agents))
    done = itertools.count(1)
    started = time.perf_counter()

    def sample(workers_done: int) -> None:
        samples.append(
            {
                "workers": workers_done,
                "rss_mib": round(rss_bytes(daemon.pid) / MIB, 1),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )

    jar = aiohttp.CookieJar(unsafe=True)  # one browser (cookies for 127.0.0.1 too)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as session:
        async with session.get(daemon.http_url + "/task_config.json") as r:  # its cookie
            await r.read()
        sample(0)

        async def client() -> None:
            for n in numbers:
                await one_worker(session, daemon.http_url, daemon.ws_url, n)
                finished = next(done)
                if finished % every == 0:
                    sample(finished)

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples


def summary(samples: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    after = [s["rss_mib"] for s in samples if s["workers"] >= warmup]
    return {
        "after_warmup_min_mib": min(after),
        "after_warmup_max_mib": max(after),
        "after_warmup_growth": round(max(after) / min(after) - 1, 3),
        "median_mib": statistics.median(after),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5_000, help="workers before the figure")
    parser.add_argument("--retention", type=float, default=30.0, help="[router] status_retention")
    parser.add_argument("--output", type=Path, default=Path("bench/results/soak"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    daemon = SoakDaemon(args.output / "daemon", units=args.agents, retention=args.retention)
    daemon.start()
    try:
        samples = asyncio.run(soak(daemon, args.agents, args.every, args.concurrency))
        time.sleep(args.retention + 10)  # the last finished agents are forgotten
        idle = {"workers": args.agents, "rss_mib": round(rss_bytes(daemon.pid) / MIB, 1)}
    finally:
        daemon.stop()
    result = {
        "agents": args.agents,
        "concurrency": args.concurrency,
        "status_retention": args.retention,
        "samples": samples,
        "idle_after": idle,
        **summary(samples, min(args.warmup, args.agents)),
    }
    (args.output / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
