"""Debian's nginx in front of routers, for the cluster tests: conf/nginx.conf as shipped,
its listen and server lines moved to this test's ports (so the example is what is tested).
Installed with apt-get when missing (CI is a fresh machine)."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_server import apt_install, free_port

NGINX = "/usr/sbin/nginx"
EXAMPLE = Path(__file__).resolve().parent.parent / "conf" / "nginx.conf"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def config_for(port: int, routers: list[int]) -> str:
    """The example config, listening on `port`, balancing over the routers' ports, with one
    worker process (each keeps its own round-robin: one is a sequence a test can follow)."""
    text = EXAMPLE.read_text()
    text, workers = re.subn(r"(?m)^worker_processes \w+;", "worker_processes 1;", text)
    assert workers == 1, "conf/nginx.conf: expected worker_processes"
    text, listens = re.subn(r"(?m)^(\s*listen )\S+;", rf"\g<1>127.0.0.1:{port};", text)
    first = re.search(r"(?m)^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", text)
    assert listens == 1 and first is not None, "conf/nginx.conf: expected one listen, servers"
    indent, options = first.group(1), first.group(2) or ""
    servers = "".join(f"{indent}server 127.0.0.1:{router}{options};\n" for router in routers)
    text, n = re.subn(
        r"(?m)^\s*server 127\.0\.0\.1:.*\n(\s*server 127\.0\.0\.1:.*\n)*", servers, text
    )
    assert n == 1, "conf/nginx.conf: expected one block of server lines"
    return text


class Nginx:
    """nginx on a free loopback port, its prefix `folder`, round-robin over `routers`."""

    def __init__(self, folder: Path, routers: list[int]) -> None:
        self.folder = folder
        self.port = free_port()
        self.routers = routers
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        apt_install("nginx-light", NGINX)
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        config = self.folder / "nginx.conf"
        config.write_text(config_for(self.port, self.routers))
        command = [NGINX, "-p", f"{self.folder}/", "-c", str(config), "-g", "daemon off;"]
        with (self.folder / "nginx.out").open("a") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                logs = [self.folder / name for name in ("nginx.out", "error.log")]
                text = "".join(p.read_text() for p in logs if p.exists())
                raise AssertionError(f"nginx did not start:\n{text}")
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
