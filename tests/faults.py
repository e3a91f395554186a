"""Fault injection: real daemons killed with SIGKILL while simulated workers work.

Each run starts the daemon processes of one topology (`twistd -n --pidfile= architect
--config FILE`, everything in a fresh folder), lets 100 simulated workers (asyncio +
aiohttp, each its own cookie jar, as a browser) register and submit in waves, kills one
process (or two, one after the other) with SIGKILL at a moment drawn from
`random.Random(seed)`, starts it again on the same config, port and data, lets the
workers finish (they retry through the outage as a page would), waits for the backend
to settle, then reads the database (the SQLite file, or the PostgreSQL database a run
is given) read-only and counts:

- acknowledged: submissions answered 200 `{"status": "Submitted!"}`;
- stored: unit submissions in the database;
- lost: acknowledged ones (matched by the unique token in their data) not stored;
- duplicated: submissions stored again (the same token, or an agent's second);
- refusals: the other 4xx answers, by code (404 "unknown agent" apart: a restarted
  router is meant to hold such a request until its backend has told it its agents).

The live variant (`run_live`) pairs workers in the live chat example
(examples/live_chat), sends chat messages with unique ids over the WebSocket, and
counts those whose delivery the partner saw that are not in `live_updates` after the
restart.

tests/test_faults.py runs these as slow tests; `python -m tests.faults --runs N` runs N
seeds of every scenario and prints a markdown table (docs/reliability.md has one);
with --postgresql, on a temporary PostgreSQL server (tests/postgres.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import aiohttp
import psycopg

from tests.postgres import PostgresServer, start_server

ROOT = Path(__file__).resolve().parent.parent
LIVE_CHAT = ROOT / "examples" / "live_chat"

WORKERS = 100
UNITS = 300
WAVES = 10  # workers start in this many waves...
WAVE_GAP = 0.3  # ...this many seconds apart, so submissions come over ~4 s
WORK_TIME = (0.2, 1.5)  # seconds a worker spends on its unit before submitting
KILL_AT = (1.0, 3.0)  # seconds into the burst when the (first) kill comes
RESTART_AFTER = (0.0, 1.0)  # seconds a killed process stays down
SECOND_KILL_AFTER = (0.5, 1.5)  # "backend, then router": seconds between the two kills
RETRY_FOR = 30.0  # seconds a worker keeps retrying one request
BACKOFF = (0.1, 0.5)  # seconds between two attempts
ATTEMPT_TIMEOUT = 10.0  # seconds one attempt may take before it counts as failed
START_TIMEOUT = 30.0  # seconds a daemon has to become ready
SETTLE_FOR = 20.0  # most seconds the database has to take in what is still coming
SETTLED_WHEN_STILL = 3.0  # the database is settled when its counts stay for this long
STATUS_INTERVAL = 1.0  # the backend's request_statuses period: a restarted router learns
# its agents at the second one, so this keeps the held requests short


def twistd_command() -> list[str]:
    """twistd: the script beside this interpreter, else its module. (`python -m twisted`
    is Twisted's other runner, `twist`, which has neither -n nor --pidfile.)"""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def free_port() -> int:
    """A free loopback port below the ephemeral range: a router started again on its
    port must find it free, and a port the system hands out for outgoing connections
    (the workers' reconnections) could be taken while the router is down."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        port = random.randrange(10000, max(10001, low))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        found: int = s.getsockname()[1]
        return found


# --- the processes ---


class Process:
    """One daemon, `twistd -n --pidfile= architect --config <ini>`. Each start logs to a
    file of its own (`<name>.<n>.log`): a killed process's log stays as it was."""

    def __init__(self, name: str, ini: Path) -> None:
        self.name = name
        self.ini = ini
        self.folder = ini.parent
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_file: IO[bytes] | None = None
        self.logs: list[Path] = []

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def log(self) -> Path:
        """The current (or last) start's log."""
        return self.logs[-1]

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        self._close_log()
        path = self.folder / f"{self.name}.{len(self.logs) + 1}.log"
        self.logs.append(path)
        self.log_file = open(path, "wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.popen = subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", "architect", "--config", str(self.ini)],
            cwd=self.folder,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def kill(self) -> None:
        """SIGKILL, and reaped."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        self._close_log()

    def stop(self) -> None:
        """SIGTERM (a clean stop), SIGKILL if it takes over 10 s."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def said(self, text: str) -> int:
        """How many lines of the current start's log hold `text`."""
        if not self.logs or not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count(text)

    def tail(self, lines: int = 30) -> str:
        out = []
        for path in self.logs:
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"--- {path.name} (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)

    def notable_lines(self) -> list[str]:
        """Tracebacks, unhandled errors, and the warn, error and critical lines of every
        start's log."""
        marks = ("Traceback", "Unhandled", "#warn]", "#error]", "#critical]")
        found = []
        for path in self.logs:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if any(mark in line for mark in marks):
                    found.append(f"{path.name}: {line}")
        return found


class Processes:
    """Every process a run started; `kill_all` ends them whatever happened (the tests'
    fixture calls it at the end of each test)."""

    def __init__(self) -> None:
        self.started: list[Process] = []

    def add(self, process: Process) -> Process:
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in reversed(self.started):
            process.kill()

    def tails(self, lines: int = 30) -> str:
        return "\n".join(process.tail(lines) for process in self.started)


# --- the topologies ---

EMBEDDED = "embedded"
SEPARATE = "separate"  # [backend] mode = off (the router) + mode = remote (our backend)


@dataclass(frozen=True)
class Scenario:
    name: str
    topology: str
    kill: tuple[str, ...]  # the processes killed, in order (two: the second while the
    # first is away; then started again in the reverse order)

    @property
    def target(self) -> str:
        return ", then ".join(self.kill)


SCENARIOS = [
    Scenario("embedded", EMBEDDED, ("daemon",)),
    Scenario("backend", SEPARATE, ("backend",)),
    Scenario("router", SEPARATE, ("router",)),
    Scenario("backend-router", SEPARATE, ("backend", "router")),
]
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Task:
    """The [task] (and the router's page settings) a cluster runs."""

    name: str
    units: Path
    module: Path | None = None
    units_per_assignment: int = 1
    extra: dict[str, str] = field(default_factory=dict)  # more [task] keys

    def section(self) -> str:
        lines = ["[task]", f"name = {self.name}", f"units = {self.units}"]
        if self.module is not None:
            lines.append(f"module = {self.module}")
        lines.append(f"units_per_assignment = {self.units_per_assignment}")
        lines.extend(f"{k} = {v}" for k, v in self.extra.items())
        return "\n".join(lines) + "\n"


def static_task(folder: Path, units: int = UNITS) -> Task:
    """A static task of `units` units, its units file written in `folder`."""
    path = folder / "units.json"
    path.write_text(json.dumps([{"n": n} for n in range(units)]))
    return Task("faults", path)


ROUTER_KEYS = {
    # Every worker comes from 127.0.0.1.
    "max_connections_per_address": "0",
    "max_connections": "0",
    "access_log": "on",
}


class Cluster:
    """The processes of one topology, their configs and data in `folder`, the router on
    one port for every start."""

    def __init__(
        self,
        topology: str,
        folder: Path,
        task: Task,
        processes: Processes,
        router_keys: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.topology = topology
        self.folder = folder
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        router = {**ROUTER_KEYS, **(router_keys or {})}
        listen = f"tcp:{self.port}:interface=127.0.0.1"
        router_lines = "".join(f"{k} = {v}\n" for k, v in router.items())
        storage = "[storage]\ndata_dir = data\n"
        if database_url is not None:
            storage += f"url = {database_url}\n"
        self.processes: dict[str, Process] = {}
        if topology == EMBEDDED:
            ini = self._write(
                "daemon",
                f"[router]\nlisten = {listen}\nupload_dir = uploads\n{router_lines}"
                f"[backend]\nmode = embedded\nstatus_interval = {STATUS_INTERVAL}\n"
                f"{storage}{task.section()}",
            )
            self.processes["daemon"] = processes.add(Process("daemon", ini))
            self.database = StoredRows(ini.parent / "data" / "architect.sqlite3", database_url)
        elif topology == SEPARATE:
            ini = self._write(
                "router",
                f"[router]\nlisten = {listen}\nupload_dir = uploads\n"
                f"backend_token = {self.token}\n{router_lines}[backend]\nmode = off\n",
            )
            self.processes["router"] = processes.add(Process("router", ini))
            ini = self._write(
                "backend",
                f"[backend]\nmode = remote\nrouter_url = ws://127.0.0.1:{self.port}/\n"
                f"backend_token = {self.token}\nstatus_interval = {STATUS_INTERVAL}\n"
                f"{storage}{task.section()}",
            )
            self.processes["backend"] = processes.add(Process("backend", ini))
            self.database = StoredRows(ini.parent / "data" / "architect.sqlite3", database_url)
        else:
            raise ValueError(f"no topology {topology!r}")

    def _write(self, name: str, text: str) -> Path:
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        ini = folder / "router.ini"
        ini.write_text(text)
        return ini

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self, name: str, wait: bool = True) -> None:
        """Start one process; with `wait`, until it is ready: a router answers /is_alive, a
        backend has said where it stores and (remote) is connected to the router."""
        process = self.processes[name]
        process.start()
        if not wait:
            return
        deadline = time.monotonic() + START_TIMEOUT
        if name in ("daemon", "router"):
            await self._until(process, deadline, self._alive)
        if name == "daemon":
            await self._until(process, deadline, lambda: said(process, "submissions are stored"))
        if name == "backend":
            await self._until(
                process, deadline, lambda: said(process, "connected to the router at")
            )

    async def start_all(self) -> None:
        for name in self.processes:  # the router before the backend
            await self.start(name)

    async def _until(
        self, process: Process, deadline: float, ready: Callable[[], Awaitable[bool]]
    ) -> None:
        while not await ready():
            if not process.running:
                raise RuntimeError(f"{process.name} exited at start:\n{process.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} not ready in time:\n{process.tail()}")
            await asyncio.sleep(0.05)

    async def _alive(self) -> bool:
        try:
            timeout = aiohttp.ClientTimeout(total=1)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(self.url + "/is_alive") as response:
                    return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def stop_all(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.processes.values())

    def notable_lines(self) -> list[str]:
        return [line for p in self.processes.values() for line in p.notable_lines()]


async def said(process: Process, text: str) -> bool:
    return process.said(text) > 0


# --- the faults ---


@dataclass
class Timeline:
    """What the fault plan did, in seconds from the burst's start."""

    start: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.start

    def note(self, what: str) -> None:
        self.events.append((round(self.now(), 2), what))

    def first(self, prefix: str) -> float | None:
        return next((t for t, what in self.events if what.startswith(prefix)), None)

    def __str__(self) -> str:
        return ", ".join(f"{what} at {t:.2f} s" for t, what in self.events)


async def inject(cluster: Cluster, kill: tuple[str, ...], rng: random.Random, at: Timeline) -> None:
    """Kill the processes of `kill` (the second while the first is away), then start them
    again, the last killed first, each after a pause drawn from `rng`."""
    await asyncio.sleep(rng.uniform(*KILL_AT))
    for n, name in enumerate(kill):
        if n:
            await asyncio.sleep(rng.uniform(*SECOND_KILL_AFTER))
        cluster.kill(name)
        at.note(f"killed {name}")
    for name in reversed(kill):
        await asyncio.sleep(rng.uniform(*RESTART_AFTER))
        at.note(f"started {name}")
        await cluster.start(name)
        at.note(f"{name} ready")


# --- the workers ---


@dataclass
class Worker:
    """One simulated browser page, and what happened to it."""

    name: str
    token: str
    agent_ids: list[str] = field(default_factory=list)  # every agent it was given
    submitted_for: str | None = None  # the agent its acknowledged submission was for
    acknowledged: bool = False
    acknowledged_at: float | None = None
    refused: str | None = None  # a registration's failure_reason
    refusals: Counter[int] = field(default_factory=Counter)  # 4xx answers, by code
    refusal_texts: list[str] = field(default_factory=list)  # "<path> <code> <answer>"
    gave_up: str | None = None  # the last failure of a request it stopped retrying
    retries: int = 0

    def refused_with(self, what: str, status: int, answer: Any) -> None:
        self.refusals[status] += 1
        self.refusal_texts.append(f"{self.name}: {what}: {status} {json.dumps(answer)[:200]}")

    @property
    def registration_id(self) -> str:
        return f"{self.name}-assignment"


class Gave(Exception):
    """A request failed for RETRY_FOR seconds."""


async def attempt(
    session: aiohttp.ClientSession, method: str, url: str, body: Any | None
) -> tuple[int | None, Any, str]:
    """One attempt: (status or None, the JSON answer or None, what went wrong)."""
    try:
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)
        async with session.request(method, url, json=body, timeout=timeout) as response:
            text = await response.text()
            try:
                answer = json.loads(text) if text else None
            except ValueError:
                answer = None
            return response.status, answer, f"{response.status} {text[:200]}"
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        return None, None, f"{type(e).__name__}: {e}"


async def retrying(
    worker: Worker,
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Callable[[], Any] | None,
    rng: random.Random,
) -> tuple[int, Any]:
    """A request as a page makes it: tried again on a connection error, a 5xx, a timeout
    or a 200 whose body did not come whole, after a short backoff, for RETRY_FOR seconds.
    Returns the first other answer; raises Gave."""
    deadline = time.monotonic() + RETRY_FOR
    while True:
        status, answer, why = await attempt(session, method, url, body() if body else None)
        if status is not None and status < 500 and not (status == 200 and answer is None):
            return status, answer
        if time.monotonic() > deadline:
            raise Gave(why)
        worker.retries += 1
        await asyncio.sleep(rng.uniform(*BACKOFF))


def new_session() -> aiohttp.ClientSession:
    """A browser: its own connections and its own cookies (the router binds an agent to
    the `architect_session` cookie; `unsafe` keeps cookies of an IP address host)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def provider_data(worker: Worker) -> dict[str, Any]:
    return {
        "worker_name": worker.name,
        "agent_registration_id": worker.registration_id,
        "assignment_id": f"{worker.name}-assignment",
        "provider_type": "mock",
    }


async def register(
    worker: Worker, session: aiohttp.ClientSession, base: str, rng: random.Random
) -> str | None:
    """The page's config (its answer brings the session cookie), then a registration;
    the agent id, or None (refused: worker.refused or worker.refusals say why)."""
    await retrying(worker, session, "GET", base + "/task_config.json", None, rng)

    def body() -> dict[str, Any]:
        return {"provider_data": provider_data(worker), "client_timestamp": time.time()}

    status, answer = await retrying(worker, session, "POST", base + "/request_agent", body, rng)
    if status != 200:
        worker.refused_with("/request_agent", status, answer)
        return None
    data = answer.get("data") if isinstance(answer, dict) else None
    agent_id = data.get("agent_id") if isinstance(data, dict) else None
    if not agent_id:
        worker.refused = str(data.get("failure_reason") if isinstance(data, dict) else answer)
        return None
    worker.agent_ids.append(agent_id)
    return str(agent_id)


async def submit(
    worker: Worker,
    session: aiohttp.ClientSession,
    base: str,
    agent_id: str,
    rng: random.Random,
    at: Timeline,
) -> None:
    def body() -> dict[str, Any]:
        final_data = {"token": worker.token, "worker": worker.name}
        return {
            "USED_AGENT_ID": agent_id,
            "final_data": final_data,
            "client_timestamp": time.time(),
        }

    status, answer = await retrying(worker, session, "POST", base + "/submit_task", body, rng)
    if status == 200 and isinstance(answer, dict) and answer.get("status") == "Submitted!":
        worker.acknowledged = True
        worker.acknowledged_at = at.now()
        worker.submitted_for = agent_id
    else:
        worker.refused_with(f"/submit_task for {agent_id}", status, answer)


async def static_worker(
    worker: Worker, base: str, delay: float, rng: random.Random, at: Timeline
) -> None:
    await asyncio.sleep(delay)
    async with new_session() as session:
        try:
            agent_id = await register(worker, session, base, rng)
            if agent_id is None:
                return
            await asyncio.sleep(rng.uniform(*WORK_TIME))
            await submit(worker, session, base, agent_id, rng, at)
        except Gave as e:
            worker.gave_up = str(e)


def make_workers(seed: int, count: int = WORKERS) -> list[Worker]:
    return [Worker(f"s{seed}w{n}", f"token-{seed}-{n}-{uuid.uuid4().hex}") for n in range(count)]


def wave_delay(n: int, count: int) -> float:
    per_wave = max(1, count // WAVES)
    return (n // per_wave) * WAVE_GAP


# --- the database ---


@dataclass(frozen=True)
class StoredRows:
    """Read-only queries on a cluster's database: its SQLite file, or the url's."""

    sqlite_file: Path
    url: str | None = None

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of `sql` (no rows while the database is not made yet)."""
        if self.url is not None:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as db:
                db.read_only = True
                return db.execute(sql).fetchall()
        if not self.sqlite_file.exists():
            return []
        uri = f"file:{self.sqlite_file}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            return db.execute(sql).fetchall()


def stored_submissions(database: StoredRows) -> list[tuple[str, str | None]]:
    """(agent id, token) of every unit submission stored."""
    rows = database.query("SELECT agent_id, data FROM submissions WHERE kind = 'unit' ORDER BY id")
    out = []
    for agent_id, data in rows:
        try:
            token = json.loads(data).get("token")
        except (ValueError, AttributeError):
            token = None
        out.append((str(agent_id), token if isinstance(token, str) else None))
    return out


def duplicates(rows: list[tuple[str, str | None]]) -> int:
    """The rows (agent id, token) repeating an earlier row's token (a submission stored
    twice) or agent (an agent with two unit submissions), each counted once."""
    tokens: set[str] = set()
    agents: set[str] = set()
    repeated = 0
    for agent_id, token in rows:
        if agent_id in agents or (token is not None and token in tokens):
            repeated += 1
        agents.add(agent_id)
        if token is not None:
            tokens.add(token)
    return repeated


def extra_agents(database: StoredRows) -> int:
    """Agents beyond the first of each registration id: a retried registration that got a
    fresh agent rather than the one it had been given."""
    rows = database.query(
        "SELECT COUNT(*) - COUNT(DISTINCT agent_registration_id) FROM agents WHERE kind = 'unit'"
    )
    return int(rows[0][0] or 0) if rows else 0


def stored_live_updates(database: StoredRows) -> list[tuple[str, str | None, str]]:
    """(agent id, update_id, data) of every browser-sent live update stored."""
    rows = database.query(
        "SELECT agent_id, update_id, data FROM live_updates WHERE direction = 'mephisto_bound'"
    )
    return [(str(a), u, str(d)) for a, u, d in rows]


async def settle(count: Callable[[], int], complete: Callable[[], bool]) -> float:
    """Poll the database until `complete()`, or until `count()` has stayed the same for
    SETTLED_WHEN_STILL seconds, for SETTLE_FOR seconds at most. Returns the seconds taken."""
    started = time.monotonic()
    last, still_since = -1, started
    while time.monotonic() - started < SETTLE_FOR:
        try:
            now = count()
        except (sqlite3.Error, psycopg.Error):
            now = -1  # the database is being created or locked: ask again
        if now >= 0 and complete():
            break
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= SETTLED_WHEN_STILL:
            break
        await asyncio.sleep(0.25)
    return time.monotonic() - started


# --- one run's outcome ---


@dataclass
class Outcome:
    scenario: Scenario
    seed: int
    timeline: Timeline
    acknowledged: int = 0
    stored: int = 0
    lost: list[str] = field(default_factory=list)  # the lost tokens (or update ids)
    duplicated: int = 0
    wrong_agent: int = 0  # stored for another agent than the one acknowledged
    refusals: Counter[int] = field(default_factory=Counter)
    not_found: int = 0  # 404s (in refusals too)
    registration_refused: Counter[str] = field(default_factory=Counter)
    refusal_texts: list[str] = field(default_factory=list)
    gave_up: int = 0
    retries: int = 0
    acknowledged_before_kill: int = 0
    acknowledged_while_down: int = 0  # between the first kill and the last "ready"
    acknowledged_after: int = 0  # once everything was ready again
    unacknowledged: int = 0  # submissions never acknowledged, or updates never delivered
    extra_agents: int = 0  # registrations retried into a second agent (see extra_agents)
    settle_seconds: float = 0.0
    seconds: float = 0.0
    notable: list[str] = field(default_factory=list)
    what: str = "submissions"
    engine: str = "sqlite"

    def problems(self) -> dict[str, int]:
        """What went wrong, by kind, with its count (only the kinds that happened).

        lost, duplicated, wrong_agent: the database does not hold what was acknowledged,
        once; 404: submissions answered "unknown agent" (a restarted router is meant to
        hold them); refused: any other 4xx, or a registration refused; gave_up: a request
        that failed for RETRY_FOR seconds; not_resumed (live runs): nothing was delivered
        after the restarts."""
        found = {
            "lost": len(self.lost),
            "duplicated": self.duplicated,
            "wrong_agent": self.wrong_agent,
            "404": self.not_found,
            "refused": self.refusals.total() - self.not_found + self.registration_refused.total(),
            "gave_up": self.gave_up,
        }
        if self.what == "live updates" and self.acknowledged_after == 0:
            found["not_resumed"] = 1
        return {kind: n for kind, n in found.items() if n}

    def line(self) -> str:
        s = self.scenario
        refusals = dict(sorted(self.refusals.items())) or "none"
        text = (
            f"[{self.what}] engine={self.engine} topology={s.topology} kill={s.target}"
            f" seed={self.seed}:"
            f" acknowledged={self.acknowledged} stored={self.stored} lost={len(self.lost)}"
            f" duplicated={self.duplicated} wrong_agent={self.wrong_agent}"
            f" refusals={refusals} 404s={self.not_found}"
            f" gave_up={self.gave_up} retries={self.retries}"
            f" acknowledged_before_kill={self.acknowledged_before_kill}"
            f" acknowledged_while_down={self.acknowledged_while_down}"
            f" acknowledged_after={self.acknowledged_after}"
            f" unacknowledged={self.unacknowledged} extra_agents={self.extra_agents}"
            f" settled_in={self.settle_seconds:.1f}s took={self.seconds:.1f}s"
            f" ({self.timeline})"
        )
        if self.registration_refused:
            text += f" registrations_refused={dict(self.registration_refused)}"
        if self.not_found:
            text += (
                f" DEFECT: {self.not_found} submission(s) answered 404 (unknown agent): a"
                " restarted router should hold them until its backend told it its agents"
            )
        return text

    def report(self) -> str:
        text = self.line()
        if self.lost:
            text += f"\nlost (first 5): {self.lost[:5]}"
        if self.refusal_texts:
            text += "\nrefusals (first 10):\n" + "\n".join(self.refusal_texts[:10])
        if self.notable:
            text += "\nnotable daemon log lines (first 20):\n" + "\n".join(self.notable[:20])
        return text


def engine_of(database_url: str | None) -> str:
    return "sqlite" if database_url is None else "postgresql"


class Runner(Protocol):
    """run_submissions or run_live: on the cluster's SQLite file, or at database_url."""

    __name__: str

    def __call__(
        self,
        scenario: Scenario,
        seed: int,
        folder: Path,
        processes: Processes,
        database_url: str | None = None,
    ) -> Coroutine[Any, Any, Outcome]: ...


def count_workers(outcome: Outcome, workers: Iterable[Worker]) -> None:
    for w in workers:
        outcome.refusals.update(w.refusals)
        outcome.refusal_texts.extend(w.refusal_texts)
        outcome.not_found += w.refusals.get(404, 0)
        if w.refused is not None:
            outcome.registration_refused[w.refused] += 1
        outcome.gave_up += w.gave_up is not None
        outcome.retries += w.retries


def count_moments(outcome: Outcome, moments: Iterable[float]) -> None:
    """How many acknowledgements (at these moments) came before the first kill, and how
    many between it and the last restarted process being ready."""
    killed, ready = outcome.timeline.first("killed"), None
    for t, what in outcome.timeline.events:
        if what.endswith(" ready"):
            ready = t
    if killed is None:
        return
    for t in moments:
        if t < killed:
            outcome.acknowledged_before_kill += 1
        elif ready is None or t < ready:
            outcome.acknowledged_while_down += 1
        else:
            outcome.acknowledged_after += 1


# --- a run: static submissions ---


async def run_submissions(
    scenario: Scenario,
    seed: int,
    folder: Path,
    processes: Processes,
    database_url: str | None = None,
) -> Outcome:
    """One run of `scenario` with `seed`: returns the counts; the processes are left for
    the caller to end (`processes.kill_all()`)."""
    started = time.monotonic()
    rng = random.Random(seed)
    cluster = Cluster(
        scenario.topology, folder, static_task(folder), processes, database_url=database_url
    )
    await cluster.start_all()
    workers = make_workers(seed)
    at = Timeline()
    fault = asyncio.create_task(inject(cluster, scenario.kill, rng, at))
    # Each worker its own random stream (its backoffs and work time), all from the seed.
    await asyncio.gather(
        *(
            static_worker(
                w, cluster.url, wave_delay(n, len(workers)), random.Random(rng.random()), at
            )
            for n, w in enumerate(workers)
        ),
        fault,
    )
    at.note("workers done")
    acknowledged = {w.token: w for w in workers if w.acknowledged}

    def complete() -> bool:
        tokens = {t for _, t in stored_submissions(cluster.database)}
        return all(t in tokens for t in acknowledged)

    outcome = Outcome(scenario, seed, at, engine=engine_of(database_url))
    outcome.settle_seconds = await settle(
        lambda: len(stored_submissions(cluster.database)), complete
    )
    rows = stored_submissions(cluster.database)
    outcome.acknowledged = len(acknowledged)
    outcome.unacknowledged = len(workers) - len(acknowledged)
    outcome.stored = len(rows)
    tokens = Counter(t for _, t in rows)
    outcome.lost = sorted(t for t in acknowledged if t not in tokens)
    outcome.duplicated = duplicates(rows)
    outcome.wrong_agent = sum(
        1
        for agent_id, t in rows
        if t in acknowledged and acknowledged[t].submitted_for not in (None, agent_id)
    )
    outcome.extra_agents = extra_agents(cluster.database)
    count_workers(outcome, workers)
    count_moments(outcome, (w.acknowledged_at for w in acknowledged.values() if w.acknowledged_at))
    outcome.notable = cluster.notable_lines()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- a run: live updates ---

LIVE_PAIRS = 20  # 40 workers, two to a chat
LIVE_MESSAGES = 20  # each sends this many messages, one every LIVE_GAP seconds: they
# go on past the restarts, so deliveries after them are checked too
LIVE_GAP = 0.3
HEARTBEAT_EVERY = 1.0  # mephisto-task's is 6 s: sooner, so a restarted router binds the
# socket sooner (it drops a packet for an agent it does not know yet)
LIVE_ROUTER_KEYS = {"disconnect_grace": "30", "heartbeat_timeout": "60"}


def live_task(folder: Path) -> Task:
    """The live chat example: its hooks, units of two seats, enough assignments."""
    path = folder / "units.json"
    path.write_text(json.dumps([{"topic": f"topic {n}"} for n in range(LIVE_PAIRS * 3)]))
    return Task(
        "faults_live",
        path,
        module=LIVE_CHAT / "task.py",
        units_per_assignment=2,
        extra={"timeout": "600", "assignment_duration": "1200"},
    )


@dataclass
class LiveWorker:
    worker: Worker
    agent_id: str | None = None
    sent: dict[str, str] = field(default_factory=dict)  # update_id -> text
    seen_texts: dict[str, float] = field(default_factory=dict)  # received, first at (s)
    in_task: asyncio.Event = field(default_factory=asyncio.Event)


def packet(packet_type: str, subject_id: str, data: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "packet_type": packet_type,
            "subject_id": subject_id,
            "data": data or {},
            "client_timestamp": time.time(),
        }
    )


async def live_socket(
    live: LiveWorker,
    session: aiohttp.ClientSession,
    url: str,
    outgoing: asyncio.Queue[str],
    done: asyncio.Event,
    at: Timeline,
) -> None:
    """The page's socket, opened again whenever it drops (as mephisto-task's does):
    `alive` first, then what is queued; everything received is noted."""
    assert live.agent_id is not None
    agent_id = live.agent_id
    unsent: list[str] = []  # taken from the queue, not yet written to a socket
    while not done.is_set():
        try:
            async with session.ws_connect(url, heartbeat=None, max_msg_size=0) as ws:
                await ws.send_str(packet("alive", agent_id))

                async def writer(ws: aiohttp.ClientWebSocketResponse = ws) -> None:
                    while True:
                        while unsent:
                            await ws.send_str(unsent[0])
                            unsent.pop(0)
                        unsent.append(await outgoing.get())

                async def heartbeats(ws: aiohttp.ClientWebSocketResponse = ws) -> None:
                    while True:
                        await asyncio.sleep(HEARTBEAT_EVERY)
                        await ws.send_str(packet("heartbeat", agent_id))

                writing = asyncio.gather(writer(), heartbeats())
                try:
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            continue
                        p = json.loads(message.data)
                        data = p.get("data") or {}
                        if p.get("packet_type") == "update_status":
                            if data.get("status") == "in task":
                                live.in_task.set()
                        elif p.get("packet_type") == "client_bound_live_update":
                            text = data.get("text")
                            if isinstance(text, str):
                                live.seen_texts.setdefault(text, at.now())
                        if done.is_set():
                            break
                finally:
                    writing.cancel()
                    # Cancelled, or failed writing to a socket that went: either way done.
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await writing
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        if not done.is_set():
            await asyncio.sleep(0.3)


async def live_worker(
    live: LiveWorker,
    cluster: Cluster,
    delay: float,
    rng: random.Random,
    done: asyncio.Event,
    at: Timeline,
) -> None:
    await asyncio.sleep(delay)
    worker = live.worker
    async with new_session() as session:
        try:
            live.agent_id = await register(worker, session, cluster.url, rng)
        except Gave as e:
            worker.gave_up = str(e)
            return
        if live.agent_id is None:
            return
        outgoing: asyncio.Queue[str] = asyncio.Queue()
        sock = asyncio.create_task(live_socket(live, session, cluster.ws_url, outgoing, done, at))
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(live.in_task.wait(), 20)
            for n in range(LIVE_MESSAGES):
                update_id = str(uuid.uuid4())
                text = f"{worker.token}-m{n}"
                live.sent[update_id] = text
                data = {"text": text, "update_id": update_id}
                outgoing.put_nowait(packet("mephisto_bound_live_update", live.agent_id, data))
                await asyncio.sleep(LIVE_GAP)
            await done.wait()
        finally:
            sock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sock


async def run_live(
    scenario: Scenario,
    seed: int,
    folder: Path,
    processes: Processes,
    database_url: str | None = None,
) -> Outcome:
    """Pairs of workers chat (examples/live_chat) while the scenario's processes are killed
    and started again; every message the partner received must be in `live_updates`."""
    started = time.monotonic()
    rng = random.Random(seed)
    cluster = Cluster(
        scenario.topology,
        folder,
        live_task(folder),
        processes,
        router_keys=LIVE_ROUTER_KEYS,
        database_url=database_url,
    )
    await cluster.start_all()
    lives = [LiveWorker(w) for w in make_workers(seed, LIVE_PAIRS * 2)]
    at = Timeline()
    done = asyncio.Event()
    # Two at a time, so that partners are paired as they come.
    tasks = [
        asyncio.create_task(
            live_worker(live, cluster, (n // 2) * 0.1, random.Random(rng.random()), done, at)
        )
        for n, live in enumerate(lives)
    ]
    await inject(cluster, scenario.kill, rng, at)
    # Everything up again: let the messages still queued get through, then stop.
    sending = LIVE_MESSAGES * LIVE_GAP + LIVE_PAIRS * 0.1
    await asyncio.sleep(max(0.0, sending + 3.0 - at.now()))
    done.set()
    await asyncio.gather(*tasks)
    at.note("workers done")

    seen_by_partner = {text: t for live in lives for text, t in live.seen_texts.items()}
    delivered = {
        (live.agent_id, uid, text)
        for live in lives
        for uid, text in live.sent.items()
        if text in seen_by_partner
    }

    def delivered_stored() -> set[str]:
        return {uid for _, uid, _ in stored_live_updates(cluster.database) if uid}

    def complete() -> bool:
        stored = delivered_stored()
        return all(uid in stored for _, uid, _ in delivered)

    outcome = Outcome(scenario, seed, at, what="live updates", engine=engine_of(database_url))
    outcome.settle_seconds = await settle(
        lambda: len(stored_live_updates(cluster.database)), complete
    )
    rows = stored_live_updates(cluster.database)
    ids = {(agent_id, uid) for agent_id, uid, _ in rows if uid}
    stored_ids = Counter(uid for agent_id, uid, _ in rows if uid)
    outcome.acknowledged = len(delivered)
    outcome.unacknowledged = sum(len(live.sent) for live in lives) - len(delivered)
    outcome.stored = len(rows)
    outcome.lost = sorted(uid for _, uid, _ in delivered if uid not in stored_ids)
    outcome.duplicated = sum(n - 1 for n in stored_ids.values() if n > 1)
    outcome.wrong_agent = sum(
        1 for agent_id, uid, _ in delivered if (agent_id, uid) not in ids and uid in stored_ids
    )
    outcome.extra_agents = extra_agents(cluster.database)
    count_workers(outcome, (live.worker for live in lives))
    count_moments(outcome, (seen_by_partner[text] for _, _, text in delivered))
    outcome.notable = cluster.notable_lines()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- the command line ---


def table(outcomes: list[Outcome]) -> str:
    """One row per scenario (and kind of run): its runs added up; "(k runs)" counts the
    runs that had any."""
    rows = [
        "| topology | kill target | engine | runs | acknowledged | lost | duplicated | 404s"
        " | not resumed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by: dict[tuple[str, str, str], list[Outcome]] = {}
    for o in outcomes:
        by.setdefault((o.what, o.scenario.name, o.engine), []).append(o)

    def total(group: list[Outcome], count: Callable[[Outcome], int]) -> str:
        n, runs = sum(count(o) for o in group), sum(1 for o in group if count(o))
        return f"{n} ({runs} runs)" if n else "0"

    for (what, _, engine), group in by.items():
        s = group[0].scenario
        topology = "embedded" if s.topology == EMBEDDED else "router (`off`) + remote backend"
        if what != "submissions":
            topology += f", {what}"
        resumed = (
            total(group, lambda o: int(o.acknowledged_after == 0)) if what != "submissions" else "-"
        )
        rows.append(
            f"| {topology} | {s.target} | {engine} | {len(group)}"
            f" | {sum(o.acknowledged for o in group)}"
            f" | {total(group, lambda o: len(o.lost))}"
            f" | {total(group, lambda o: o.duplicated)}"
            f" | {total(group, lambda o: o.not_found)}"
            f" | {resumed} |"
        )
    return "\n".join(rows)


async def run_one(
    runner: Runner,
    scenario: Scenario,
    seed: int,
    folder: Path,
    database_url: str | None = None,
) -> Outcome:
    processes = Processes()
    try:
        return await runner(scenario, seed, folder, processes, database_url)
    finally:
        processes.kill_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="seeds per scenario (1..N)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument(
        "--scenario", action="append", choices=sorted(BY_NAME), help="(repeatable) default: all"
    )
    parser.add_argument("--live", action="store_true", help="also the live update runs")
    parser.add_argument("--only-live", action="store_true", help="only the live update runs")
    parser.add_argument("--keep", type=Path, help="keep each run's folder under this one")
    parser.add_argument(
        "--postgresql", action="store_true", help="on a temporary PostgreSQL server, not SQLite"
    )
    args = parser.parse_args(argv)
    server = start_server() if args.postgresql else None
    try:
        print(table(_runs(args, server)))
    finally:
        if server is not None:
            server.stop()


def _runs(args: argparse.Namespace, server: PostgresServer | None) -> list[Outcome]:
    """Every run the arguments ask for, each on a database of its own."""
    import tempfile

    scenarios = [BY_NAME[n] for n in args.scenario] if args.scenario else SCENARIOS
    runners: list[Runner] = []
    if not args.only_live:
        runners.append(run_submissions)
    if args.live or args.only_live:
        runners.append(run_live)
    outcomes = []
    for runner in runners:
        for scenario in scenarios:
            for seed in range(args.first_seed, args.first_seed + args.runs):
                with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
                    folder = Path(tmp)
                    if args.keep is not None:
                        folder = args.keep / f"{runner.__name__}-{scenario.name}-{seed}"
                        folder.mkdir(parents=True, exist_ok=True)
                    name = server.fresh_database() if server is not None else None
                    url = server.url(name) if server is not None and name else None
                    try:
                        outcome = asyncio.run(run_one(runner, scenario, seed, folder, url))
                    finally:
                        if server is not None and name:
                            server.drop_database(name)
                print(outcome.report(), flush=True)
                outcomes.append(outcome)
    print()
    return outcomes


if __name__ == "__main__":
    main()
