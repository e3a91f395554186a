"""A real redis-server for the cluster tests: its own port and folder, Debian's package
installed with apt-get when missing (CI is a fresh machine)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

REDIS_SERVER = "/usr/bin/redis-server"


def _fail_setup(what: str) -> NoReturn:
    pytest.fail(f"cluster test set-up: {what}", pytrace=False)


def apt_install(package: str, binary: str) -> str:
    """`binary`, installed from Debian's `package` with apt-get when missing."""
    if Path(binary).exists():
        return binary
    apt = shutil.which("apt-get")
    if apt is None:
        _fail_setup(f"{binary} is missing and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in ([apt, "update"], [apt, "install", "-y", package]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            _fail_setup(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    if not Path(binary).exists():
        _fail_setup(f"apt-get installed {package} but {binary} is still missing")
    return binary


def ensure_redis_server() -> str:
    return apt_install("redis-server", REDIS_SERVER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server on a loopback port in its own folder; stop() and start() again keep the port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = ensure_redis_server()
        self.folder.mkdir(exist_ok=True)
        command = [server, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.folder), "--save", "", "--appendonly", "no"]
        with (self.folder / "redis.log").open("a") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                _fail_setup(
                    f"redis-server did not start:\n{(self.folder / 'redis.log').read_text()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started RedisServer in tmp_path, stopped after the test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()
