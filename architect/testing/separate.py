"""The daemon of a bot run in a process of its own, so that it has its own core and the
figures are its own, not shared with the bots'.

The child, `python -m architect.testing.serve SETTINGS` (serve.py), runs the daemon of
`run_daemon.daemon_for_run` in a folder the parent made, and says on its stdout:
`ready PORT` once it serves, `error TEXT` (JSON text) for each error the daemon logs,
`failed TEXT` if it cannot start. It stops on SIGTERM; the parent then reads its
database, and removes the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import architect
from architect.config import Config, ConfigError
from architect.storage import Database, open_database
from architect.testing.daemon import relocated
from architect.testing.waits import WaitTimeout, with_timeout

START_TIMEOUT = 120.0  # seconds for the child to open its database, add its units, listen
STOP_TIMEOUT = 60.0


class SeparateDaemon(ProcessProtocol):
    def __init__(self, reactor: Any, config: Config, workers: int, duration: float | None) -> None:
        self.reactor = reactor
        self.config = config
        self.workers = workers
        self.duration = duration
        self.folder = Path(tempfile.mkdtemp(prefix="architect-bots-"))
        self.port: int | None = None
        self.errors: list[str] = []
        self.ready: Deferred[int] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._failed: str | None = None
        self._pending = b""
        self._stderr: deque[str] = deque(maxlen=20)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        settings = {
            "config": str(self.config.path),
            "folder": str(self.folder),
            "workers": self.workers,
            "duration": self.duration,
        }
        # The child imports this very architect, installed or not.
        source = str(Path(architect.__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}
        command = [sys.executable, "-m", "architect.testing.serve", json.dumps(settings)]
        self.reactor.spawnProcess(self, sys.executable, command, env=env)
        try:
            self.port = await with_timeout(
                self.ready,
                self.reactor,
                START_TIMEOUT,
                f"the daemon did not start within {START_TIMEOUT:g} s",
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if not self.ended.called:
            transport = self.transport
            assert transport is not None  # a process that has not ended has its transport
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                pass  # it ended meanwhile: `ended` fires at once
            try:
                await with_timeout(self.ended, self.reactor, STOP_TIMEOUT, "")
            except WaitTimeout:
                transport.signalProcess("KILL")
                await self.ended

    async def open_database(self) -> Database:
        """Its database (once it stopped), read here."""
        storage = relocated(self.config, self.folder).storage
        return await open_database(storage, reactor=self.reactor)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- what the child says ---

    def outReceived(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line.decode("utf-8", "replace"))

    def errReceived(self, data: bytes) -> None:
        self._stderr.extend(data.decode("utf-8", "replace").splitlines())

    def _line(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "ready" and not self.ready.called:
            self.ready.callback(int(rest))
        elif word == "error":
            self.errors.append(json.loads(rest))
        elif word == "failed":
            self._failed = json.loads(rest)

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            why = self._failed or "\n".join(self._stderr) or reason.getErrorMessage()
            self.ready.errback(ConfigError(self.config.path, None, None, why))
        self.ended.callback(None)
