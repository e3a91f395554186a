"""A real PostgreSQL server for the test session: a temporary cluster of Debian's package.

The server refuses to run as root, so when the tests run as root it runs as its own
system user (SERVER_USER, created if missing). The cluster lives in a temporary folder,
listens on 127.0.0.1 at a free port (and a unix socket in that folder), trusts local
connections and skips fsync: it holds only test data and dies with the session (the
benchmark, bench/, starts one that keeps fsync). Each test gets a database of its own
(fresh_database). Anything that goes wrong raises: the tests that need PostgreSQL fail
loudly, never skip.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import attrs
import psycopg

SERVER_USER = "architect-pg"
BIN_DIRS = [Path(f"/usr/lib/postgresql/{v}/bin") for v in (17, 16, 15, 14, 13)]
SUPERUSER = "architect"
# The one role that must give a password (scram), to test password_file; all else is trusted.
PASSWORD_USER = "architect_pw"
START_TIMEOUT = 30.0


class PostgresUnavailable(RuntimeError):
    """The server could not be installed or started."""


@attrs.define
class PostgresServer:
    root: Path
    bin_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    _numbers: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        )

    def fresh_database(self) -> str:
        """The name of a new, empty database."""
        name = f"test_{os.getpid()}_{next(self._numbers)}"
        with self.admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: smart shutdown, without waiting for clients
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def find_bin_dir() -> Path:
    for candidate in BIN_DIRS:
        if (candidate / "initdb").exists():
            return candidate
    _install()
    for candidate in BIN_DIRS:
        if (candidate / "initdb").exists():
            return candidate
    raise PostgresUnavailable(f"no PostgreSQL binaries under {', '.join(map(str, BIN_DIRS))}")


def _install() -> None:
    """Debian's postgresql package, as CI's fresh machine lacks it."""
    if os.geteuid() != 0:
        raise PostgresUnavailable("PostgreSQL is not installed and the tests are not root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(command)} failed: {done.stderr[-2000:]}")


def _server_user() -> str | None:
    """The user to run the server as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"cannot create the user {SERVER_USER}: {done.stderr}"
            ) from None
    return SERVER_USER


def _as_user(user: str | None, command: list[str]) -> list[str]:
    return command if user is None else ["runuser", "-u", user, "--", *command]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(durable: bool = False) -> PostgresServer:
    """A temporary server; with `durable`, its commits wait for the disk as a real one's do
    (the benchmark's), else fsync is off (test data only: speed over a power cut)."""
    bin_dir = find_bin_dir()
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="architect-pg-"))
    root.chmod(0o755)
    data = root / "data"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    initdb = _as_user(
        user,
        [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"],
    )
    done = subprocess.run(initdb, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {done.stdout[-1000:]} {done.stderr[-2000:]}")
    hba = data / "pg_hba.conf"
    hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    port = _free_port()
    settings = ["-c", "max_connections=200"] + ([] if durable else ["-c", "fsync=off"])
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        _as_user(
            user,
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(root),
                "-c",
                "listen_addresses=127.0.0.1",
                *settings,
            ],
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = PostgresServer(root, bin_dir, port, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            text = (root / "server.log").read_text(errors="replace")
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"postgres exited at start: {text[-2000:]}")
        try:
            server.admin().close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise PostgresUnavailable("postgres did not accept connections in time") from None
            time.sleep(0.1)
