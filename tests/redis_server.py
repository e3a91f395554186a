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
    pytest.fail(f"redis test set-up: {what}", pytrace=False)


def ensure_redis_server() -> str:
    if Path(REDIS_SERVER).exists():
        return REDIS_SERVER
    apt = shutil.which("apt-get")
    if apt is None:
        _fail_setup(f"{REDIS_SERVER} is missing and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in ([apt, "update"], [apt, "install", "-y", "redis-server"]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            _fail_setup(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    if not Path(REDIS_SERVER).exists():
        _fail_setup(f"apt-get installed redis-server but {REDIS_SERVER} is still missing")
    return REDIS_SERVER


def _free_port() -> int:
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


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    """Starts redis-server on a free loopback port in tmp_path; stops it after the test."""
    server = ensure_redis_server()
    port = _free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    log = (folder / "redis.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                _fail_setup(f"redis-server did not start:\n{(folder / 'redis.log').read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()
        log.close()
