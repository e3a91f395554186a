"""Debian's haproxy in front of routers, for the cluster tests: conf/haproxy.cfg as shipped,
its bind and server lines moved to this test's ports (so the example is what is tested).
Installed with apt-get when missing (CI is a fresh machine)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from bench.cluster import haproxy_config
from tests.redis_server import apt_install, free_port

HAPROXY = "/usr/sbin/haproxy"
EXAMPLE = Path(__file__).resolve().parent.parent / "conf" / "haproxy.cfg"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def config_for(port: int, routers: list[int]) -> str:
    """The example config, listening on `port`, balancing over the routers' ports."""
    return haproxy_config(EXAMPLE.read_text(), port, routers)


class HAProxy:
    """haproxy on a free loopback port in `folder`, round-robin over `routers` (ports)."""

    def __init__(self, folder: Path, routers: list[int]) -> None:
        self.folder = folder
        self.port = free_port()
        self.routers = routers
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not Path(HAPROXY).exists():
            apt_install("haproxy", HAPROXY)
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "haproxy.cfg"
        config.write_text(config_for(self.port, self.routers))
        with (self.folder / "haproxy.log").open("a") as log:
            self._process = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"haproxy did not start:\n{(self.folder / 'haproxy.log').read_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
