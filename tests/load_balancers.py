"""Debian's haproxy and nginx in front of routers, for the cluster tests: each runs the
example config as shipped (conf/haproxy.cfg, conf/nginx.conf), only its ports moved, so
the examples are what is tested. Installed with apt-get when missing (CI is a fresh
machine)."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

from bench.cluster import haproxy_config
from bench.servers import stop_process
from tests.redis_server import apt_install, free_port

CONF = Path(__file__).resolve().parent.parent / "conf"
HAPROXY = "/usr/sbin/haproxy"
NGINX = "/usr/sbin/nginx"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def nginx_config(port: int, routers: list[int]) -> str:
    """conf/nginx.conf, listening on `port`, balancing over the routers' ports, with one
    worker process (each keeps its own round-robin: one is a sequence a test can follow)."""
    text = (CONF / "nginx.conf").read_text()
    text, workers = re.subn(r"(?m)^worker_processes \w+;", "worker_processes 1;", text)
    text, listens = re.subn(r"(?m)^(\s*listen )\S+;", rf"\g<1>127.0.0.1:{port};", text)
    first = re.search(r"(?m)^(\s*)server 127\.0\.0\.1:\d+( [^;]*)?;\n", text)
    assert workers == listens == 1 and first is not None, "conf/nginx.conf changed shape"
    indent, options = first.group(1), first.group(2) or ""
    servers = "".join(f"{indent}server 127.0.0.1:{router}{options};\n" for router in routers)
    block = r"(?m)^\s*server 127\.0\.0\.1:.*\n(\s*server 127\.0\.0\.1:.*\n)*"
    text, n = re.subn(block, servers, text)
    assert n == 1, "conf/nginx.conf: expected one block of server lines"
    return text


class LoadBalancer:
    """One on a free loopback port, its files in `folder`, round-robin over `routers`."""

    package = ""
    binary = ""

    def __init__(self, folder: Path, routers: list[int]) -> None:
        self.folder = folder
        self.port = free_port()
        self.routers = routers
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """Write the config into `folder`; the command line that runs it in the foreground."""
        raise NotImplementedError

    def start(self) -> None:
        apt_install(self.package, self.binary)
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "output.log"
        with log.open("a") as out:
            self._process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                logs = [log, *self.folder.glob("error.log")]
                text = "".join(p.read_text() for p in logs)
                raise AssertionError(f"{self.package} did not start:\n{text}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, 5)
            self._process = None


class HAProxy(LoadBalancer):
    package = "haproxy"
    binary = HAPROXY

    def command(self) -> list[str]:
        config = self.folder / "haproxy.cfg"
        example = (CONF / "haproxy.cfg").read_text()
        config.write_text(haproxy_config(example, self.port, self.routers))
        return [self.binary, "-db", "-f", str(config)]


class Nginx(LoadBalancer):
    package = "nginx-light"
    binary = NGINX

    def command(self) -> list[str]:
        (self.folder / "tmp").mkdir(exist_ok=True)
        config = self.folder / "nginx.conf"
        config.write_text(nginx_config(self.port, self.routers))
        return [self.binary, "-p", f"{self.folder}/", "-c", str(config), "-g", "daemon off;"]
