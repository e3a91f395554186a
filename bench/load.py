"""The load generator: a backend and many workers speaking the Architect protocol.

Everything here runs in child processes (see ``run_in_child`` and ``BackendProcess``),
never in the runner's process, so the generator is never measured together with a router.
Latencies are measured with ``time.perf_counter`` inside one process (send and receive
happen in the same worker process), so no clocks are compared across processes.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import multiprocessing
import os
import random
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import closing
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import psycopg

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECT_CONCURRENCY = 100  # sockets opened at once while building up N agents


# --- measuring ---


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class CpuWindow:
    """CPU use of each named process over a window, as a fraction of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {role: pid for role, pid in pids.items() if pid}
        self.start_wall = time.perf_counter()
        self.start = {role: cpu_seconds(pid) for role, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.start_wall
        return {
            role: round((cpu_seconds(pid) - self.start[role]) / wall, 3)
            for role, pid in self.pids.items()
        }


def percentiles(samples: list[float]) -> dict[str, float | int]:
    """p50/p99/max of latencies in seconds, reported in milliseconds."""
    if not samples:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(samples)
    last = len(ordered) - 1

    def at(q: float) -> float:
        return round(ordered[min(last, int(q * len(ordered)))] * 1000, 3)

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0)}


def packet(packet_type: str, subject_id: str, data: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "packet_type": packet_type,
            "subject_id": subject_id,
            "data": data if data is not None else {},
            "client_timestamp": time.time(),
        }
    )


# --- the backend (its own process) ---


async def _backend(url: str, ready: Any, stop: Any, conn: Connection, name: str = "") -> None:
    """Answer register_agent once per request id; echo each live update once per update_id.

    Mephisto's Node router sends every packet twice, so duplicates are dropped here, as a
    real backend must. `name` tells apart the agents of several (one per router of a cluster).
    """
    stats = {"registered": 0, "echoed": 0, "submitted": 0, "duplicates": 0, "other": 0}
    seen: set[str | None] = set()  # request and update ids (None: a packet without one)
    agent_ids = itertools.count()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, max_msg_size=0, autoping=True) as ws,
    ):
        await ws.send_str(packet("alive", "mephisto"))

        async def watch_stop() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.1)
            await ws.close()

        watcher = asyncio.create_task(watch_stop())
        ready.set()
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            p = json.loads(message.data)
            kind = p.get("packet_type")
            data = p.get("data") or {}
            if kind == "register_agent":
                request_id = data.get("request_id") or p["subject_id"]
                if request_id in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(request_id)
                number = next(agent_ids)
                stats["registered"] += 1
                await ws.send_str(
                    packet(
                        "agent_details",
                        request_id,
                        {
                            "request_id": request_id,
                            "agent_id": f"bench-agent-{name}{number}",
                            "worker_id": f"bench-worker-{name}{number}",
                            "init_task_data": {},
                            "failure_reason": None,
                        },
                    )
                )
            elif kind == "mephisto_bound_live_update":
                update_id = data.get("update_id")
                if update_id in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(update_id)
                stats["echoed"] += 1
                await ws.send_str(packet("client_bound_live_update", p["subject_id"], data))
            elif kind == "submit_unit":  # acknowledged by the router already; not stored here
                key = "submit:" + str(p.get("subject_id"))
                if key in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(key)
                stats["submitted"] += 1
            else:
                stats["other"] += 1
        watcher.cancel()
    conn.send(stats)


def _backend_main(url: str, ready: Any, stop: Any, conn: Connection, name: str) -> None:
    without_collector_pauses()
    asyncio.run(_backend(url, ready, stop, conn, name))


class BackendProcess:
    """The generator's backend, connected to a router as "mephisto", in its own process."""

    def __init__(self, url: str, name: str = "") -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Event()
        self.stop_event = ctx.Event()
        self.receive, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_backend_main,
            args=(url, self.ready, self.stop_event, send, name),
            daemon=True,
        )
        self.process.start()
        if not self.ready.wait(30):
            self.process.kill()
            raise RuntimeError(f"the bench backend could not connect to {url}")

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        stats: dict[str, int] = {}
        if self.receive.poll(10):
            stats = self.receive.recv()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
        return stats


# --- workers (in a child process per scenario) ---


class Agent:
    """One worker's socket: sends live updates and heartbeats, times the answers."""

    def __init__(self, agent_id: str, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.agent_id = agent_id
        self.ws = ws
        self.sequence = itertools.count()
        self.outstanding: dict[str, float] = {}
        self.heartbeat_sent: float | None = None
        self.answered = asyncio.Event()
        self.rtts: list[float] = []
        self.heartbeat_rtts: list[float] = []
        self.recording = True

    async def send_update(self) -> None:
        update_id = f"{self.agent_id}-{next(self.sequence)}"
        self.outstanding[update_id] = time.perf_counter()
        self.answered.clear()
        await self.ws.send_str(
            packet("mephisto_bound_live_update", self.agent_id, {"update_id": update_id})
        )

    async def send_heartbeat(self) -> None:
        self.heartbeat_sent = time.perf_counter()
        await self.ws.send_str(packet("heartbeat", self.agent_id))

    async def read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.perf_counter()
            p = json.loads(message.data)
            kind = p.get("packet_type")
            if kind == "heartbeat":
                if self.heartbeat_sent is not None:
                    if self.recording:
                        self.heartbeat_rtts.append(now - self.heartbeat_sent)
                    self.heartbeat_sent = None
                continue
            update_id = (p.get("data") or {}).get("update_id")
            sent = self.outstanding.pop(update_id, None) if update_id else None
            if sent is not None:  # duplicates (Node sends everything twice) are ignored
                if self.recording:
                    self.rtts.append(now - sent)
                self.answered.set()


async def open_agents(
    session: aiohttp.ClientSession, url: str, agent_ids: list[str]
) -> tuple[list[Agent], list[asyncio.Task[None]]]:
    """A socket for each registered agent (a router takes one only for an agent its
    backend named, from the browser that registered it: `session` keeps its cookie)."""
    agents: list[Agent] = []
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(agent_id: str) -> None:
        async with limit:
            ws = await session.ws_connect(url, max_msg_size=0, autoping=True, heartbeat=None)
            agent = Agent(agent_id, ws)
            await ws.send_str(packet("alive", agent.agent_id))
            agents.append(agent)

    await asyncio.gather(*(one(agent_id) for agent_id in agent_ids))
    readers = [asyncio.create_task(agent.read()) for agent in agents]
    await asyncio.sleep(0.2)  # let the alives land before traffic starts
    return agents, readers


async def close_agents(agents: list[Agent], readers: list[asyncio.Task[None]]) -> None:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY * 5)

    async def one(agent: Agent) -> None:
        async with limit:
            try:
                await asyncio.wait_for(agent.ws.close(), 2)
            except (TimeoutError, aiohttp.ClientError, ConnectionError):
                pass

    await asyncio.gather(*(one(a) for a in agents))
    for reader in readers:
        reader.cancel()


def _browser(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (the router binds each agent to the
    browser session that registered it); `unsafe`: also for an IP address like 127.0.0.1."""
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True))


def _session() -> aiohttp.ClientSession:
    return _browser(aiohttp.TCPConnector(limit=0, force_close=False))


# --- S1: registration ---


async def s1_registration(
    base: str, concurrencies: list[int], duration: float, warmup: float, pids: dict[str, int]
) -> list[dict[str, Any]]:
    return [await _s1_level(base, c, duration, warmup, pids) for c in concurrencies]


async def _s1_level(
    base: str, concurrency: int, duration: float, warmup: float, pids: dict[str, int]
) -> dict[str, Any]:
    """``concurrency`` clients each posting /request_agent back to back (keep-alive)."""
    latencies: list[float] = []
    errors = 0
    recording = False
    deadline = time.perf_counter() + warmup + duration
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with _browser(connector) as session:

        async def client() -> None:
            nonlocal errors
            body = {"provider_data": {"worker_name": "bench"}, "client_timestamp": 0.0}
            while time.perf_counter() < deadline:
                body["client_timestamp"] = time.time()
                start = time.perf_counter()
                try:
                    async with session.post(base + "/request_agent", json=body) as r:
                        answer = await r.json(content_type=None)
                    ok = r.status == 200 and bool((answer.get("data") or {}).get("agent_id"))
                except (aiohttp.ClientError, ValueError):
                    ok = False
                if not recording:
                    continue
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
        await asyncio.sleep(warmup)
        recording = True
        window = CpuWindow(pids)
        started = time.perf_counter()
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "throughput_per_s": round(len(latencies) / elapsed, 1),
        "errors": errors,
        **percentiles(latencies),
        "cpu": window.stop(),
    }


# --- S2: live updates ---


async def s2_live(
    base: str,
    ws_url: str,
    agent_counts: list[int],
    per_agent_rate: float,
    duration: float,
    warmup: float,
    pids: dict[str, int],
) -> list[dict[str, Any]]:
    results = []
    async with _session() as session:
        for run, count in enumerate(agent_counts):
            agent_ids, _ = await _register_agents(session, base, count, f"s2r{run}")
            agents, readers = await open_agents(session, ws_url, agent_ids)
            entry: dict[str, Any] = {"agents": count}

            # Open loop: each agent sends per_agent_rate updates/s, random phase.
            offered = await _open_loop(agents, per_agent_rate, duration, warmup, pids)
            entry["offered"] = offered
            await asyncio.sleep(0.7)  # let stragglers (and Node's duplicates) drain
            for agent in agents:
                agent.outstanding.clear()
                agent.rtts.clear()

            # Closed loop: each agent keeps one update in flight.
            entry["closed"] = await _closed_loop(agents, duration, warmup, pids)
            results.append(entry)
            await close_agents(agents, readers)
            await asyncio.sleep(0.5)
    return results


async def _open_loop(
    agents: list[Agent], rate: float, duration: float, warmup: float, pids: dict[str, int]
) -> dict[str, Any]:
    interval = 1.0 / rate
    start = time.perf_counter()
    deadline = start + warmup + duration
    sent = 0

    async def drive(agent: Agent) -> None:
        nonlocal sent
        next_at = start + random.random() * interval
        while True:
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if next_at >= deadline:
                return
            await agent.send_update()
            sent += 1

    for agent in agents:
        agent.recording = False
    drivers = [asyncio.create_task(drive(a)) for a in agents]
    await asyncio.sleep(warmup)
    for agent in agents:
        agent.recording = True
        agent.rtts.clear()
    sent = 0
    window = CpuWindow(pids)
    await asyncio.gather(*drivers)
    await asyncio.sleep(0.3)
    cpu = window.stop()
    samples = [rtt for a in agents for rtt in a.rtts]
    return {
        "offered_per_s": round(rate * len(agents), 1),
        "sent": sent,
        "lost": max(0, sent - len(samples)),
        **percentiles(samples),
        "cpu": cpu,
    }


async def _closed_loop(
    agents: list[Agent], duration: float, warmup: float, pids: dict[str, int]
) -> dict[str, Any]:
    stop_at = time.perf_counter() + warmup + duration

    async def drive(agent: Agent) -> None:
        while time.perf_counter() < stop_at:
            await agent.send_update()
            try:
                await asyncio.wait_for(agent.answered.wait(), 5)
            except TimeoutError:
                agent.outstanding.clear()

    for agent in agents:
        agent.recording = False
    drivers = [asyncio.create_task(drive(a)) for a in agents]
    await asyncio.sleep(warmup)
    for agent in agents:
        agent.rtts.clear()
        agent.recording = True
    window = CpuWindow(pids)
    started = time.perf_counter()
    await asyncio.sleep(max(0.0, stop_at - started))
    elapsed = time.perf_counter() - started
    done = sum(len(a.rtts) for a in agents)
    cpu = window.stop()
    for agent in agents:
        agent.recording = False
    await asyncio.gather(*drivers)
    samples = [rtt for a in agents for rtt in a.rtts]
    return {"echo_per_s": round(done / elapsed, 1), **percentiles(samples), "cpu": cpu}


# --- S3: idle capacity ---


async def s3_capacity(
    base: str,
    ws_url: str,
    agent_counts: list[int],
    hold: float,
    interval: float,
    pids: dict[str, int],
) -> list[dict[str, Any]]:
    router_pid = pids.get("router", 0)
    results = []
    async with _session() as session:
        for run, count in enumerate(agent_counts):
            agent_ids, _ = await _register_agents(session, base, count, f"s3r{run}")
            await asyncio.sleep(0.5)
            base_rss = rss_bytes(router_pid)
            connect_start = time.perf_counter()
            agents, readers = await open_agents(session, ws_url, agent_ids)
            connect_s = time.perf_counter() - connect_start
            window = CpuWindow(pids)
            start = time.perf_counter()

            async def beat(agent: Agent, start: float = start) -> None:
                # like the browser: first heartbeat soon after alive, then every interval
                next_at = start + 0.5 + random.random() * interval
                while True:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if next_at >= start + hold:
                        return
                    if agent.heartbeat_sent is not None:
                        agent.heartbeat_rtts.append(time.perf_counter() - agent.heartbeat_sent)
                    await agent.send_heartbeat()
                    next_at += interval

            await asyncio.gather(*(beat(a) for a in agents))
            await asyncio.sleep(1.0)
            peak_rss = rss_bytes(router_pid)
            cpu = window.stop()
            unanswered = sum(1 for a in agents if a.heartbeat_sent is not None)
            samples = [rtt for a in agents for rtt in a.heartbeat_rtts]
            results.append(
                {
                    "agents": count,
                    "connect_s": round(connect_s, 2),
                    "rss_base_mb": round(base_rss / 2**20, 1),
                    "rss_mb": round(peak_rss / 2**20, 1),
                    "rss_per_conn_kb": round((peak_rss - base_rss) / count / 1024, 2),
                    "unanswered": unanswered,
                    **percentiles(samples),
                    "cpu": cpu,
                }
            )
            await close_agents(agents, readers)
    return results


# --- S4: submissions ---

REGISTER_CONCURRENCY = 16


STORED_UNITS = "SELECT count(*) FROM submissions WHERE kind = 'unit'"


class StoredCount:
    """Counts the unit submissions committed to the daemon's database: its SQLite file
    (read-only, opened for each count; WAL lets us read), or a postgresql:// url (one
    connection for all counts: a new one costs the server a process)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.pg: psycopg.Connection[Any] | None = None
        if database.startswith("postgresql://"):
            self.pg = psycopg.connect(database, autocommit=True, connect_timeout=10)

    def __call__(self) -> int:
        if self.pg is not None:
            row = self.pg.execute(STORED_UNITS).fetchone()
        else:
            uri = f"file:{self.database}?mode=ro"
            with closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
                row = db.execute(STORED_UNITS).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        if self.pg is not None:
            self.pg.close()


async def register_worker(
    session: aiohttp.ClientSession, base: str, prefix: str, number: int
) -> str:
    """A fresh worker ``{prefix}-w{number}`` registered through /request_agent: its agent id."""
    worker = f"{prefix}-w{number}"
    body = {
        "provider_data": {
            "worker_name": worker,
            "agent_registration_id": f"{prefix}-a{number}-{worker}",
            "assignment_id": f"{prefix}-a{number}",
            "provider_type": "mock",
        },
        "client_timestamp": time.time(),
    }
    async with session.post(base + "/request_agent", json=body) as r:
        answer = await r.json(content_type=None)
    data = answer.get("data") or {}
    if r.status != 200 or not data.get("agent_id"):
        raise RuntimeError(f"registration of {worker} failed: {r.status} {answer}")
    agent_id: str = data["agent_id"]
    return agent_id


async def submit_unit(session: aiohttp.ClientSession, base: str, agent_id: str) -> bool:
    """The agent's page posts /submit_task once; whether it was acknowledged as kept."""
    body = {
        "USED_AGENT_ID": agent_id,
        "final_data": {
            "answer": agent_id[-8:],
            "rating": 4,
            "comment": "A short free-text comment, as a task page would send. " * 3,
            "timings": [1.5, 2.25, 3.0],
        },
        "client_timestamp": time.time(),
    }
    try:
        async with session.post(base + "/submit_task", json=body) as r:
            answer = await r.json(content_type=None)
        return r.status == 200 and answer == {"status": "Submitted!"}
    except (aiohttp.ClientError, ValueError):
        return False


async def _register_agents(
    session: aiohttp.ClientSession, base: str, count: int, prefix: str
) -> tuple[list[str], float]:
    """``count`` fresh workers registered through /request_agent: their agent ids, and the rate."""
    names = iter(range(count))
    agent_ids: list[str] = []

    async def client(names: Iterator[int] = names) -> None:
        for number in names:
            agent_ids.append(await register_worker(session, base, prefix, number))

    started = time.perf_counter()
    # One first, alone: its answer's session cookie then goes with every other request
    # (one browser holding many agents), rather than each early request getting its own.
    await client(iter([next(names)]))
    await asyncio.gather(*(client() for _ in range(REGISTER_CONCURRENCY)))
    return agent_ids, count / (time.perf_counter() - started)


async def _submit_all(
    session: aiohttp.ClientSession, base: str, agent_ids: list[str], concurrency: int
) -> tuple[list[float], list[str], int, float]:
    """Each agent posts /submit_task once, ``concurrency`` at a time, back to back.

    Returns the latencies and agent ids of the acknowledged ones, the errors, the seconds.
    """
    todo = iter(agent_ids)
    latencies: list[float] = []
    acknowledged: list[str] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        for agent_id in todo:
            start = time.perf_counter()
            if await submit_unit(session, base, agent_id):
                latencies.append(time.perf_counter() - start)
                acknowledged.append(agent_id)
            else:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, acknowledged, errors, time.perf_counter() - started


async def _all_stored(
    count_stored: StoredCount, expected: int, timeout: float
) -> tuple[int, float]:
    """Poll the database until ``expected`` unit submissions are in; (count, when: perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        stored = count_stored()
        now = time.perf_counter()
        if stored >= expected or now > deadline:
            return stored, now
        await asyncio.sleep(0.01)


async def s4_submissions(
    base: str,
    concurrencies: list[int],
    per_level: int,
    warmup_count: int,
    pids: dict[str, int],
    database: str | None = None,
) -> list[dict[str, Any]]:
    """/submit_task as fast as it goes at each concurrency, each agent submitting once.

    Agents are registered first (not timed with the submissions). With ``database`` (our
    embedded daemon's SQLite file or PostgreSQL url) the generator then waits until every
    acknowledged submission is committed there, so the table can show when the last one
    was durable.
    """
    count_stored = StoredCount(database) if database is not None else None
    try:
        return await _s4_levels(base, concurrencies, per_level, warmup_count, pids, count_stored)
    finally:
        if count_stored is not None:
            count_stored.close()


async def _s4_levels(
    base: str,
    concurrencies: list[int],
    per_level: int,
    warmup_count: int,
    pids: dict[str, int],
    count_stored: StoredCount | None,
) -> list[dict[str, Any]]:
    results = []
    acknowledged_so_far = 0
    for level, concurrency in enumerate(concurrencies):
        connector = aiohttp.TCPConnector(limit=max(concurrency, REGISTER_CONCURRENCY))
        async with _browser(connector) as session:
            agent_ids, registration_rate = await _register_agents(
                session, base, warmup_count + per_level, f"s4l{level}"
            )
            warm, measured = agent_ids[:warmup_count], agent_ids[warmup_count:]
            _, warm_acked, _, _ = await _submit_all(session, base, warm, concurrency)
            acknowledged_so_far += len(warm_acked)
            if count_stored is not None:  # start from a quiet daemon
                await _all_stored(count_stored, acknowledged_so_far, 30)
            window = CpuWindow(pids)
            started = time.perf_counter()
            latencies, acked, errors, elapsed = await _submit_all(
                session, base, measured, concurrency
            )
            cpu = window.stop()
        acknowledged_so_far += len(acked)
        entry: dict[str, Any] = {
            "concurrency": concurrency,
            "submissions": len(acked),
            "throughput_per_s": round(len(acked) / elapsed, 1),
            "errors": errors,
            **percentiles(latencies),
            "cpu": cpu,
            "registration_per_s": round(registration_rate, 1),
        }
        if count_stored is not None:
            stored, done_at = await _all_stored(count_stored, acknowledged_so_far, 60)
            all_stored_s = max(elapsed, done_at - started)
            entry["stored_total"] = stored
            entry["all_stored_s"] = round(all_stored_s, 3)
            entry["durable_per_s"] = round(len(acked) / all_stored_s, 1)
        entry["acknowledged_agents"] = warm_acked + acked
        results.append(entry)
    return results


async def full_stack(
    base: str, workers: int, concurrency: int, pids: dict[str, int], database: str
) -> list[dict[str, Any]]:
    """The whole path, ``concurrency`` workers at a time: each fresh worker registers, submits
    at once, and the generator waits until every acknowledged submission is in ``database``."""
    count_stored = StoredCount(database)
    try:
        return [await _full_stack(base, workers, concurrency, pids, count_stored)]
    finally:
        count_stored.close()


async def _full_stack(
    base: str, workers: int, concurrency: int, pids: dict[str, int], count_stored: StoredCount
) -> dict[str, Any]:
    registrations: list[float] = []
    submissions: list[float] = []
    acknowledged: list[str] = []
    errors = 0
    names = iter(range(1, workers))

    async def one(number: int) -> None:
        nonlocal errors
        start = time.perf_counter()
        agent_id = await register_worker(session, base, "full", number)
        registered = time.perf_counter()
        registrations.append(registered - start)
        if await submit_unit(session, base, agent_id):
            submissions.append(time.perf_counter() - registered)
            acknowledged.append(agent_id)
        else:
            errors += 1

    async def client() -> None:
        for number in names:
            await one(number)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with _browser(connector) as session:
        await one(0)  # alone: its session cookie then goes with every other request
        first = len(acknowledged)
        window = CpuWindow(pids)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = window.stop()
    stored, done_at = await _all_stored(count_stored, len(acknowledged), 60)
    until_stored = max(elapsed, done_at - started)
    acked = len(acknowledged) - first
    return {
        "concurrency": concurrency,
        "workers": workers,
        "registrations_per_s": round((workers - 1) / elapsed, 1),
        "submissions_per_s": round(acked / elapsed, 1),
        "stored_per_s": round(acked / until_stored, 1),
        "errors": errors,
        "registration": percentiles(registrations),
        "submission": percentiles(submissions),
        "cpu": cpu,
        "stored_total": stored,
        "acknowledged_agents": acknowledged,
    }


async def registrations(
    base: str, workers: int, concurrency: int, pids: dict[str, int]
) -> list[dict[str, Any]]:
    """REG: ``workers`` fresh workers registered through /request_agent, ``concurrency`` at a
    time, timed from the second (the first, alone, gets the session cookie)."""
    latencies: list[float] = []
    errors = 0
    names = iter(range(1, workers))

    async def client() -> None:
        nonlocal errors
        for number in names:
            start = time.perf_counter()
            try:
                await register_worker(session, base, "reg", number)
            except (aiohttp.ClientError, RuntimeError, ValueError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with _browser(connector) as session:
        await register_worker(session, base, "reg", 0)
        window = CpuWindow(pids)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = window.stop()
    return [
        {
            "concurrency": concurrency,
            "workers": workers,
            "registrations_per_s": round(len(latencies) / elapsed, 1),
            "errors": errors,
            "latency": percentiles(latencies),
            "cpu": cpu,
        }
    ]


# --- running a scenario in a child process ---

SCENARIOS: dict[str, Callable[..., Coroutine[Any, Any, list[dict[str, Any]]]]] = {
    "S1": s1_registration,
    "S2": s2_live,
    "S3": s3_capacity,
    "S4": s4_submissions,
    "FULL": full_stack,
    "REG": registrations,
}


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def without_collector_pauses() -> None:
    """No cyclic garbage collection in this process (a generator or its backend): with
    10,000 sockets open its full collections took up to 0.6 s, timed as the router's
    latency. A run lasts minutes; the cycles it leaves meanwhile go when it ends."""
    gc.freeze()
    gc.disable()


def _child(conn: Connection, name: str, kwargs: dict[str, Any]) -> None:
    _raise_fd_limit()
    without_collector_pauses()
    try:
        kwargs["pids"] = {**kwargs["pids"], "generator": os.getpid()}
        conn.send(("ok", asyncio.run(SCENARIOS[name](**kwargs))))
    except BaseException as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        raise


def run_in_child(name: str, timeout: float, **kwargs: Any) -> list[dict[str, Any]]:
    """Run one scenario's generator in a fresh process; its results, or RuntimeError."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, name, kwargs), daemon=True)
    process.start()
    try:
        if not receive.poll(timeout):
            raise RuntimeError(f"{name} generator did not finish within {timeout:.0f} s")
        status, value = receive.recv()
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    if status != "ok":
        raise RuntimeError(f"{name} generator failed: {value}")
    result: list[dict[str, Any]] = value
    return result
