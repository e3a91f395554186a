"""The daemon as `architect.tap.build_service` makes it, started for a test.

The one module of tests/ that knows the daemon's service shape: how it is built, when
it is ready, where its router listens and where its parts are (the router hub, the
backend's handler and worker pool, the database). Tests hold a `Daemon` and use its
properties and helpers; when tap.py's services change, only this module changes.

- `daemon_config(folder, ...)`: an embedded daemon's config, everything in `folder`,
  on a free loopback port;
- `relocated(config, folder)`: a config as loaded from a file, moved to a free loopback
  port with its data and uploads in `folder`;
- `Daemons` (the `daemons` fixture of tests/conftest.py): starts daemons for one test,
  restarts one on its port, and stops them all at the end of the test, the last
  started first;
- `running(config)`: one daemon for an `async with` block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from architect.backend.channel import Channel
from architect.backend.client_io import ClientIOHandler
from architect.backend.workers import StoredWorkerPool
from architect.config import BackendConfig, Config, RouterConfig, StorageConfig, TaskConfig
from architect.database_url import DatabaseUrl
from architect.router.hub import RouterHub
from architect.router.service import RouterService
from architect.storage import Database
from architect.tap import ArchitectService, build_service
from architect.tasks.agent import Agent

reactor: Any = _reactor

ANY_LOOPBACK_PORT = "tcp:0:interface=127.0.0.1"


def on_port(port: int) -> str:
    return f"tcp:{port}:interface=127.0.0.1"


def daemon_config(
    folder: Path,
    *,
    router: dict[str, Any] | None = None,
    backend: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> Config:
    """An embedded daemon (router, backend, SQLite) with all it keeps in `folder`: listening
    on a free loopback port, the database in folder/data, uploads in folder/uploads. The
    dicts override those settings or any other of their section."""
    folder.mkdir(parents=True, exist_ok=True)
    return Config(
        path=folder / "router.ini",
        router=RouterConfig(
            **{"listen": ANY_LOOPBACK_PORT, "upload_dir": folder / "uploads", **(router or {})}
        ),
        backend=BackendConfig(**{"mode": "embedded", **(backend or {})}),
        storage=StorageConfig(data_dir=folder / "data"),
        task=TaskConfig(**(task or {})),
    )


def relocated(config: Config, folder: Path, **router: Any) -> Config:
    """`config` (e.g. a shipped file's) on a free loopback port, its database and uploads
    in `folder`; `router` overrides more of its [router] settings."""
    return attrs.evolve(
        config,
        router=attrs.evolve(
            config.router,
            **{"listen": ANY_LOOPBACK_PORT, "upload_dir": folder / "uploads", **router},
        ),
        storage=attrs.evolve(config.storage, data_dir=folder / "data"),
    )


class Daemon:
    """One daemon's service, built from `config` (not started: see `Daemons.start`)."""

    def __init__(
        self, config: Config, on_start_failure: Callable[[Failure], None] | None = None
    ) -> None:
        self.config = config
        self.service: ArchitectService = build_service(config, reactor, on_start_failure)

    def start(self) -> None:
        self.service.startService()

    async def when_ready(self) -> None:
        """Once the backend serves (its database open, its channels opening); raises what
        stopped its start."""
        await self.service.when_ready()

    async def stop(self) -> None:
        if self.service.running:
            await self.service.stopService()

    # --- what it runs ---

    @property
    def runs_router(self) -> bool:
        return self.service.hub is not None

    @property
    def runs_backend(self) -> bool:
        return "backend" in self.service.namedServices

    @property
    def port(self) -> int:
        """The router's TCP port (the daemon listens on a free one)."""
        router = self.service.getServiceNamed("router")
        assert isinstance(router, RouterService) and router.port_number is not None, (
            "this daemon's router is not listening"
        )
        return router.port_number

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener's base URL ([admin] listen, on a free port)."""
        admin = self.service.getServiceNamed("admin")
        assert admin.port_number is not None, "this daemon's admin listener is not listening"
        return f"http://127.0.0.1:{admin.port_number}"

    @property
    def ws_url(self) -> str:
        """Where a remote backend connects to this daemon's router."""
        return f"ws://127.0.0.1:{self.port}/"

    # --- its parts ---

    @property
    def hub(self) -> RouterHub:
        hub = self.service.hub
        assert hub is not None, "this daemon runs no router"
        return hub

    @property
    def handler(self) -> ClientIOHandler:
        """The backend's ClientIOHandler (once ready)."""
        handler = self.service.backend
        assert handler is not None, "this daemon runs no backend (or it is not ready)"
        return handler

    @property
    def channels(self) -> list[Channel]:
        """The backend's channels to its routers."""
        return self.handler.channels

    @property
    def database(self) -> Database:
        database = self.service.database
        assert database is not None, "this daemon runs no backend (or it is not ready)"
        return database

    @property
    def pool(self) -> StoredWorkerPool:
        pool = self.service.pool
        assert pool is not None, "this daemon runs no backend (or it is not ready)"
        return pool

    @property
    def task_run_id(self) -> int:
        """The id of the task run the backend serves."""
        return self.pool.task_run.id

    def agent(self, agent_id: str) -> Agent:
        """An agent the backend holds: one at work (a finished one is only stored)."""
        agent = self.pool.get_agent(agent_id)
        assert agent is not None, f"the backend holds no agent {agent_id}"
        return agent

    async def status(self, agent_id: str) -> str:
        """An agent's status: the held agent's, or, once it finished, the stored one."""
        agent = self.pool.get_agent(agent_id)
        if agent is not None:
            return agent.status
        await self.settled()
        stored = await self.database.get_agent(agent_id)
        assert stored is not None, f"the backend knows no agent {agent_id}"
        return stored.status

    async def has_status(self, agent_id: str, status: str) -> bool:
        """Whether the agent has `status` now (for wait_for)."""
        return await self.status(agent_id) == status

    async def has_event(self, agent_id: str, kind: str) -> bool:
        """Whether a connection event of `kind` is kept for the agent (for wait_for: the
        router sends them in batches, the backend writes them in batches)."""
        events, _ = await self.database.connection_events(self.task_run_id)
        return any(e.agent_id == agent_id and e.event == kind for e in events)

    def unclaimed(self) -> dict[str, Agent]:
        """The agents taken back at the start that no router has shown yet, by id."""
        return self.handler.resumption.unclaimed

    def settled(self) -> Deferred[None]:
        """Fires once the agents' status and live-update writes issued so far are committed."""
        return self.pool.settled()


class Daemons:
    """The daemons of one test: started here, stopped by `stop_all` (the last started first)."""

    def __init__(self, folder: Path, databases: Callable[[], DatabaseUrl] | None = None) -> None:
        self.folder = folder
        self.running: list[Daemon] = []
        self.made = 0
        # With databases, each data folder a backend keeps gets a new PostgreSQL database
        # of its own, the same one each time a config with that folder starts (a restart).
        self.databases = databases
        self.database_of_folder: dict[Path, DatabaseUrl] = {}

    def next_folder(self) -> Path:
        """A fresh folder in the test's, for one more daemon's files."""
        self.made += 1
        return self.folder / f"daemon{self.made}"

    async def start(
        self,
        config: Config,
        ready: bool = True,
        on_start_failure: Callable[[Failure], None] | None = None,
    ) -> Daemon:
        """The daemon of `config`, started; with `ready`, once its backend serves. With
        `databases`, a backend whose config names no database url gets its folder's."""
        daemon = Daemon(self.on_engine(config), on_start_failure)
        self.running.append(daemon)
        daemon.start()
        if ready and daemon.runs_backend:
            await daemon.when_ready()
        return daemon

    async def embedded(
        self,
        *,
        router: dict[str, Any] | None = None,
        backend: dict[str, Any] | None = None,
        task: dict[str, Any] | None = None,
    ) -> Daemon:
        """An embedded daemon (see `daemon_config`) in a fresh folder, ready."""
        config = daemon_config(self.next_folder(), router=router, backend=backend, task=task)
        return await self.start(config)

    def on_engine(self, config: Config) -> Config:
        """`config` on the test's engine: as it is on SQLite (or when it names a url, or
        runs no backend); else on its data folder's PostgreSQL database."""
        if self.databases is None or config.backend.mode == "off" or config.storage.url:
            return config
        folder = config.storage.data_dir
        if folder not in self.database_of_folder:
            self.database_of_folder[folder] = self.databases()
        url = self.database_of_folder[folder]
        return attrs.evolve(config, storage=attrs.evolve(config.storage, url=url))

    async def stop(self, daemon: Daemon) -> None:
        self.running.remove(daemon)
        await daemon.stop()

    async def restart(self, daemon: Daemon, ready: bool = True) -> Daemon:
        """Stop `daemon` and start its config anew, its router on the same port (pages
        left open talk to the new one), its data where they were."""
        config = daemon.config
        if daemon.runs_router:
            config = attrs.evolve(
                config, router=attrs.evolve(config.router, listen=on_port(daemon.port))
            )
        await self.stop(daemon)
        return await self.start(config, ready)

    async def stop_all(self) -> None:
        while self.running:
            await self.stop(self.running[-1])


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    """The daemon of `config` for the block: ready at its start, stopped at its end."""
    daemons = Daemons(config.path.parent)
    try:
        yield await daemons.start(config)
    finally:
        await daemons.stop_all()
