"""The servers under test, each a subprocess on loopback and a free port.

- ``ours``: ``twistd -n --pidfile= architect --config <tmp ini>`` with ``[backend] mode = off``;
- ``ours-embedded`` (S4 only): the same daemon with ``[backend] mode = embedded``, its backend
  storing to SQLite, and a ``[task]`` with enough units;
- ``ours-embedded-pg`` (S4 only): the same, storing to a PostgreSQL database (``[storage]
  url``) of a temporary server the runner starts (tests/postgres.py);
- ``ours-remote`` (FULL only): ``ours`` with our backend daemon beside it (``[backend] mode =
  remote``, OurBackendDaemon), storing to SQLite;
- ``mephisto``: Mephisto's Node router, taken from the PyPI wheel ``mephisto==1.1.1`` and set up
  on first use in ``bench/.cache/`` (nothing of it is committed);
- ``floor``: ``python -m bench.floor``, a bare one-hop echo (see floor.py).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
MEPHISTO_VERSION = "1.1.1"
NODE_ROUTER_IN_WHEEL = "mephisto/abstractions/architects/router/node/"


class SetupError(RuntimeError):
    """A server could not be set up or started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def is_alive(http_url: str) -> bool:
    """Whether `/is_alive` answers 200 there now."""
    try:
        with urllib.request.urlopen(http_url + "/is_alive", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, and SIGKILL if it has not ended within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _run(command: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(
            f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


def mephisto_router_dir() -> Path:
    """Mephisto's Node router with its npm dependencies, downloaded and installed once."""
    target = CACHE_DIR / f"mephisto-{MEPHISTO_VERSION}"
    node_dir = target / NODE_ROUTER_IN_WHEEL
    marker = target / ".installed"
    if marker.exists():
        return node_dir
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise SetupError(f"`{tool}` is not on PATH: Mephisto's router needs Node.js and npm")
    wheels = CACHE_DIR / "wheels"
    wheel = wheels / f"mephisto-{MEPHISTO_VERSION}-py3-none-any.whl"
    if not wheel.exists():
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"mephisto=={MEPHISTO_VERSION}",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheels),
            ]
        )
    if target.exists():
        shutil.rmtree(target)
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.startswith(NODE_ROUTER_IN_WHEEL)]
        if not any(n.endswith("server.js") for n in members):
            raise SetupError(f"{wheel.name} has no {NODE_ROUTER_IN_WHEEL}server.js")
        z.extractall(target, members)
    _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=node_dir)
    marker.write_text("ok\n")
    return node_dir


class Server:
    """A server subprocess; ``start`` returns once ``/is_alive`` answers."""

    name = "server"
    needs_backend = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir.resolve()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log: IO[Any] | None = None

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv, cwd, env = self.command()
        self.log = open(self.workdir / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.close()
                tail = Path(self.log.name).read_text(errors="replace").splitlines()[-20:]
                raise SetupError(
                    f"{self.name} exited at start; {self.log.name} ends:\n" + "\n".join(tail)
                )
            if is_alive(self.http_url):
                return
            time.sleep(0.1)
        self.stop()
        raise SetupError(f"{self.name} did not answer /is_alive within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None


class OurRouter(Server):
    name = "ours"

    @property
    def config_path(self) -> Path:
        return self.workdir / "router.ini"

    def config_text(self) -> str:
        return (
            "[router]\n"
            f"listen = tcp:{self.port}:interface=127.0.0.1\n"
            f"upload_dir = {self.workdir / 'uploads'}\n"
            "access_log = off\n"  # like the Node router, which logs no line per request
            "trust_loopback = on\n"  # the generator's backend, like Node's, sends no token
            # S2's closed loop sends as fast as echoes come: routing is measured, not the
            # limit (the Node router has none)
            "max_updates_per_second = 1000000\n"
            # Every generated worker comes from loopback, up to 10000 at once: no caps.
            "max_connections = 0\nmax_connections_per_address = 0\n"
            "[backend]\n"
            "mode = off\n"
        )

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        self.config_path.write_text(self.config_text())
        twistd = str(Path(sys.executable).parent / "twistd")
        if not Path(twistd).exists():
            twistd = shutil.which("twistd") or "twistd"
        argv = [twistd, "-n", "--pidfile=", "architect", "--config", str(self.config_path)]
        return argv, self.workdir, None


# What the embedded daemon logs once its backend serves (architect/router/hub.py).
READY_LINE = "[architect.router.hub#info] backend connected"


class OurEmbedded(OurRouter):
    """Our daemon with its backend in the same process, storing to SQLite (fresh at each start),
    or with ``database_url`` to that (empty) PostgreSQL database.

    ``units`` must be at least the number of agents the scenario registers.
    """

    name = "ours-embedded"
    needs_backend = False
    task_name = "bench"

    def __init__(self, workdir: Path, units: int = 1000, database_url: str | None = None) -> None:
        super().__init__(workdir)
        self.units = units
        self.database_url = database_url

    def start(self) -> None:
        """Once its backend serves too: the router answers /is_alive while the database is
        still being opened (longer on PostgreSQL), and registrations get 503 meanwhile."""
        log = self.workdir / f"{self.name}.log"
        earlier = log.stat().st_size if log.exists() else 0  # the log of earlier starts
        super().start()
        deadline = time.monotonic() + 30
        while READY_LINE not in log.read_bytes()[earlier:].decode(errors="replace"):
            if self.process is None or self.process.poll() is not None:
                raise SetupError(f"{self.name} exited at start; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise SetupError(f"{self.name}'s backend was not ready within 30 s; see {log}")
            time.sleep(0.05)

    @property
    def database(self) -> str:
        """Where the generator reads what is stored: the SQLite file, or the url."""
        if self.database_url is not None:
            return self.database_url
        return str(self.workdir / "data" / "architect.sqlite3")

    def config_text(self) -> str:
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        units = self.workdir / "units.json"
        units.write_text(json.dumps([{"n": n} for n in range(self.units)]))
        return (
            "[router]\n"
            f"listen = tcp:{self.port}:interface=127.0.0.1\n"
            f"upload_dir = {self.workdir / 'uploads'}\n"
            "access_log = off\n"
            "max_connections = 0\nmax_connections_per_address = 0\n"
            "[backend]\n"
            "mode = embedded\n"
            "[storage]\n"
            "data_dir = data\n"
            + (f"url = {self.database_url}\n" if self.database_url is not None else "")
            + "[task]\n"
            f"name = {self.task_name}\n"
            f"units = {units.name}\n"
        )


# What a remote backend logs once connected to its router (backend/websocket_channel.py).
CONNECTED_LINE = "connected to the router at"


class OurBackendDaemon(OurEmbedded):
    """Our backend alone (``[backend] mode = remote``), storing as OurEmbedded does, connected
    to the router at ``router_ws_url`` (an OurRouter: mode off, trusting loopback)."""

    name = "ours-backend"

    def __init__(self, workdir: Path, router_ws_url: str, units: int = 1000) -> None:
        super().__init__(workdir, units=units)
        self.router_ws_url = router_ws_url

    def start(self) -> None:
        """Once it says it is connected: it has no HTTP listener to ask."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv, cwd, env = self.command()
        log_path = self.workdir / f"{self.name}.log"
        earlier = log_path.stat().st_size if log_path.exists() else 0
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while CONNECTED_LINE not in log_path.read_bytes()[earlier:].decode(errors="replace"):
            if self.process.poll() is not None:
                raise SetupError(f"{self.name} exited at start; see {log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise SetupError(f"{self.name} did not connect within 30 s; see {log_path}")
            time.sleep(0.05)

    def config_text(self) -> str:
        embedded = super().config_text()
        storage = embedded[embedded.index("[storage]") :]
        return f"[backend]\nmode = remote\nrouter_url = {self.router_ws_url}\n{storage}"


class MephistoRouter(Server):
    name = "mephisto"

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        node_dir = mephisto_router_dir()
        env = {**os.environ, "PORT": str(self.port)}
        # server.js serves static files from ./static relative to its working directory.
        return [shutil.which("node") or "node", "server.js"], node_dir, env


class Floor(Server):
    name = "floor"
    needs_backend = False

    def command(self) -> tuple[list[str], Path, dict[str, str] | None]:
        argv = [sys.executable, "-m", "bench.floor", str(self.port)]
        return argv, BENCH_DIR.parent, None


SERVERS: dict[str, type[Server]] = {"ours": OurRouter, "mephisto": MephistoRouter, "floor": Floor}
