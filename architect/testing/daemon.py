"""The daemon of an ini file, run in this process for a test or a bot run.

`TaskDaemon` loads the file as `twistd architect --config FILE` would, then moves it
out of the way of anything real: the router listens on a free loopback port, the
database and uploads go to a temporary folder (removed at `stop()`), and the backend
is embedded (a config of a separate router and backend runs both here). Its task,
units, page and every other key stay as the file says, unless overridden:

    async with TaskDaemon("examples/live_chat/router.ini") as daemon:
        alice = await daemon.worker("alice")
        ...

    TaskDaemon(path, router={"disconnect_grace": 0.5}, task={"timeout": 5})
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
from twisted.web.client import HTTPConnectionPool

from architect.config import Config, load_config
from architect.router.service import RouterService
from architect.storage import Database, Submission
from architect.tap import BUILTIN_TASK_MODULE, ArchitectService, build_service
from architect.tasks.hooks import load_task_module
from architect.testing.bots import Bot, bot_of
from architect.testing.worker import SimulatedWorker

ANY_LOOPBACK_PORT = "tcp:0:interface=127.0.0.1"


def relocated(
    config: Config,
    folder: Path,
    *,
    router: dict[str, Any] | None = None,
    backend: dict[str, Any] | None = None,
    storage: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> Config:
    """`config` on a free loopback port, embedded, its database and uploads in `folder`;
    the dicts override more keys of their section."""
    return attrs.evolve(
        config,
        router=attrs.evolve(
            config.router,
            **{"listen": ANY_LOOPBACK_PORT, "upload_dir": folder / "uploads", **(router or {})},
        ),
        backend=attrs.evolve(config.backend, **{"mode": "embedded", **(backend or {})}),
        storage=attrs.evolve(config.storage, **{"data_dir": folder / "data", **(storage or {})}),
        task=attrs.evolve(config.task, **(task or {})),
    )


class TaskDaemon:
    """The daemon of `config` (an ini path, or a loaded Config) in this process."""

    def __init__(
        self,
        config: str | Path | Config,
        *,
        folder: str | Path | None = None,
        reactor: Any = None,
        router: dict[str, Any] | None = None,
        backend: dict[str, Any] | None = None,
        storage: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        loaded = config if isinstance(config, Config) else load_config(config)
        self._own_folder = folder is None
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="architect-test-"))
        self.config = relocated(
            loaded, self.folder, router=router, backend=backend, storage=storage, task=task
        )
        self.worker_timeout = timeout  # the workers' bounded waits (default: theirs)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 32
        self.service: ArchitectService | None = None
        self.workers: list[SimulatedWorker] = []
        self._start_failure: Any = None

    # --- starting and stopping ---

    async def start(self) -> TaskDaemon:
        """Start it; fires once its backend serves (ConfigError or the start's own error
        if it cannot)."""

        def start_failed(failure: Any) -> None:
            self._start_failure = failure

        self.service = build_service(self.config, self.reactor, start_failed)
        self.service.startService()
        try:
            await self.service.when_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Close its workers, stop it, and remove its temporary folder."""
        for worker in self.workers:
            await worker.close()
        self.workers.clear()
        await self.pool.closeCachedConnections()
        if self.service is not None and self.service.running:
            await self.service.stopService()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    async def __aenter__(self) -> TaskDaemon:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- where it is ---

    @property
    def port(self) -> int:
        assert self.service is not None, "the daemon is not started"
        router = self.service.getServiceNamed("router")
        assert isinstance(router, RouterService) and router.port_number is not None
        return router.port_number

    @property
    def url(self) -> str:
        """The router's address, as a page has it: http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    # --- workers ---

    async def worker(self, name: str, **options: Any) -> SimulatedWorker:
        """A simulated worker `name` with its page loaded (not registered yet); closed when
        the daemon stops. `options` go to SimulatedWorker (assignment_id, timeout...)."""
        if self.worker_timeout is not None:
            options.setdefault("timeout", self.worker_timeout)
        worker = SimulatedWorker(self.url, name, reactor=self.reactor, pool=self.pool, **options)
        self.workers.append(worker)
        await worker.open()
        return worker

    @property
    def bot(self) -> Bot:
        """How the task module's `bot` hook plays the task (a default one without it)."""
        return bot_of(load_task_module(self.config.task.module or BUILTIN_TASK_MODULE))

    async def play(
        self,
        name: str,
        bot: Callable[[SimulatedWorker], Awaitable[None]] | None = None,
        **options: Any,
    ) -> SimulatedWorker:
        """A worker `name` registers and plays the task with `bot` (the task's own by
        default); the worker, once the bot is done."""
        worker = await self.worker(name, **options)
        await worker.register()
        await (bot or self.bot)(worker)
        return worker

    # --- what it stored ---

    @property
    def database(self) -> Database:
        assert self.service is not None and self.service.database is not None, (
            "the daemon is not started"
        )
        return self.service.database

    async def settled(self) -> None:
        """Returns once the submissions handed to the task's validate_submission so far
        are judged, and the agents' status and live-update writes issued so far (those
        verdicts' with them) are committed."""
        assert self.service is not None and self.service.pool is not None
        if self.service.runner is not None:
            await self.service.runner.judged()
        await self.service.pool.settled()

    async def submissions(self, kind: str | None = "unit") -> list[Submission]:
        """The stored submissions of its task run (of `kind`; None: every kind), in order."""
        await self.settled()
        assert self.service is not None and self.service.pool is not None
        run_id = self.service.pool.task_run.id
        return list(await self.database.list_submissions(task_run_id=run_id, kind=kind))

    async def status(self, agent_id: str) -> str:
        """An agent's status, as the backend holds or stored it."""
        assert self.service is not None and self.service.pool is not None
        await self.settled()  # a submission's verdict first
        held = self.service.pool.get_agent(agent_id)
        if held is not None:
            return held.status
        stored = await self.database.get_agent(agent_id)
        assert stored is not None, f"the daemon knows no agent {agent_id}"
        return stored.status
