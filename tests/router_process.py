"""A router (mode off, [cluster] redis) as its own twistd process, for tests that kill it
with SIGKILL: nothing of it runs in the test's process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.servers import is_alive, stop_process

TWISTD = str(Path(sys.executable).parent / "twistd")


class RouterProcess:
    def __init__(self, folder: Path, port: int, redis_port: int, name: str, token: str) -> None:
        self.folder = folder
        self.port = port
        self.name = name
        self.config = folder / "router.ini"
        folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"[router]\nlisten = tcp:{port}:interface=127.0.0.1\nbackend_token = {token}\n"
            "max_connections_per_address = 0\nrequest_timeout = 5\ndisconnect_grace = 1\n"
            "[backend]\nmode = off\n"
            f"[cluster]\nredis = redis://127.0.0.1:{redis_port}/0\nrouter_id = {name}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        with (self.folder / "router.log").open("a") as log:
            self._process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "architect", "--config", str(self.config)],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not is_alive(f"http://127.0.0.1:{self.port}"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                log_text = (self.folder / "router.log").read_text()
                raise AssertionError(f"router {self.name} did not start:\n{log_text}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye to its sockets, Redis or backend."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
