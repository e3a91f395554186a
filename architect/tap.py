"""twistd options and makeService: the one place that wires the parts together.

The daemon is an `ArchitectService` with up to four named children, by the
config's `[backend] mode`:

- "router" (`RouterService`: the hub, its HTTP + WebSocket site, its listener),
  in `off` and `embedded` modes;
- "database" (`DatabaseService`), in `embedded` and `remote` modes;
- "backend" (`BackendService`: the ClientIOHandler and its channels), which
  builds the backend's parts once the database is open, then opens its channels;
- "units" (`UnitsOnHangup`), in `embedded` and `remote` modes: SIGHUP reads the ini
  file's `[task] units` again (architect/backend/more_units.py);
- "admin" (`AdminService`), with `[admin] listen`: metrics, monitor and controls.

They start in that order and stop in the reverse one, each after the last, once the
daemon has drained (architect/drain.py).
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any, ClassVar, cast

import attrs
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from architect.admin.service import AdminService
from architect.backend.channel import Channel
from architect.backend.client_io import ClientIOHandler
from architect.backend.connection_events import StoredConnectionEvents
from architect.backend.downloads import downloads_from
from architect.backend.files import UploadedFiles
from architect.backend.more_units import UnitsOnHangup
from architect.backend.resume import Resumption
from architect.backend.service import BackendService
from architect.backend.store import StoredSubmissions
from architect.backend.websocket_channel import WebsocketChannel
from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import (
    Config,
    ConfigError,
    beside_its_file,
    check_served_folder,
    load_config,
)
from architect.demo.builtin import builtin_units
from architect.drain import drain
from architect.embedded import InProcessChannel, SharedUploads
from architect.endpoints import is_loopback_only
from architect.log_json import JsonLineObserver, twistd_output
from architect.metrics import Metrics
from architect.router.hub import RouterHub
from architect.router.journal import FlushThread, Journal
from architect.router.service import RouterService
from architect.router.web import RouterWeb
from architect.run_settings import restored
from architect.storage import Database, open_database
from architect.storage.service import DatabaseService
from architect.tasks.definition import LIVE, STATIC, TaskDefinition
from architect.tasks.history import LiveLimits
from architect.tasks.hooks import TaskModuleError, load_task_module, thread_runner
from architect.tasks.runner import TaskRunner

log = Logger()

# The task module of a config that names none (a plain static task).
BUILTIN_TASK_MODULE = "architect.demo.builtin"


def load_task(config: Config) -> TaskDefinition:
    """The task module's hooks (the built-in task's without one); a ConfigError naming
    [task] module if it cannot be used."""
    try:
        return TaskDefinition.from_module(
            load_task_module(config.task.module or BUILTIN_TASK_MODULE)
        )
    except TaskModuleError as e:
        raise ConfigError(config.path, "task", "module", str(e)) from None


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = (
        "Run the Architect daemon: the router (HTTP + WebSocket for task pages),"
        " the backend, or both, as the config's [backend] mode says."
    )
    optParameters: ClassVar[list[list[str]]] = [
        ["config", "c", "conf/router.ini", "The ini file to run with (see conf/router.ini)."],
    ]

    def postOptions(self) -> None:
        try:
            config = load_config(self["config"])
        except ConfigError as e:
            # One line, no traceback, non-zero exit (twistd would print the whole usage).
            sys.stderr.write(f"architect: {e}\n")
            raise SystemExit(2) from None
        self["loaded"] = config


@attrs.define
class BackendParts:
    """What the backend is made of, once its database is open."""

    pool: StoredWorkerPool | None = None
    store: StoredSubmissions | None = None
    handler: ClientIOHandler | None = None
    runner: TaskRunner | None = None


class ArchitectService(MultiService):
    """The daemon's top service; its children are named "router", "database", "backend"."""

    def __init__(self, clock: Any = None, drain_timeout: float = 0.0) -> None:
        super().__init__()
        self.parts = BackendParts()
        self.clock = clock  # for the drain at stop (architect/drain.py); None: no drain
        self.drain_timeout = drain_timeout

    def _child(self, name: str) -> Any:
        return self.namedServices.get(name)

    @property
    def hub(self) -> RouterHub | None:
        router = self._child("router")
        return router.hub if router is not None else None

    @property
    def database(self) -> Database | None:
        database = self._child("database")
        return database.database if database is not None else None

    @property
    def pool(self) -> StoredWorkerPool | None:
        return self.parts.pool

    @property
    def store(self) -> StoredSubmissions | None:
        return self.parts.store

    @property
    def backend(self) -> ClientIOHandler | None:
        return self.parts.handler

    @property
    def runner(self) -> TaskRunner | None:
        return self.parts.runner

    def when_ready(self) -> Deferred[ClientIOHandler]:
        """Fires once the backend serves (its database open, its channels opening)."""
        backend = self._child("backend")
        if backend is None:
            return fail(RuntimeError("this process runs no backend"))
        return cast(BackendService, backend).when_ready()

    def stopService(self) -> Deferred[None]:
        # One child after the other, the last started first: the backend's channels are
        # closed before the database they write to.
        self.running = False
        stopping: Deferred[None] = Deferred.fromCoroutine(self._stop_children())
        return stopping

    async def _stop_children(self) -> None:
        if self.clock is not None:
            await drain(self, self.clock, self.drain_timeout)
        for child in reversed(list(self)):
            await child.stopService()
        if self.parts.runner is not None:
            self.parts.runner.stop()  # no live assignment times out after the daemon


def build_service(
    config: Config, reactor: Any, on_start_failure: Any | None = None
) -> ArchitectService:
    """The daemon's services from the config; a ConfigError if the task module is unusable."""
    config = beside_its_file(config)
    check_served_folder(config)
    top = ArchitectService(reactor, config.router.drain_timeout)
    metrics = Metrics(reactor)  # the daemon's one record (architect/metrics.py)
    router: RouterService | None = None
    hub: RouterHub | None = None
    web: RouterWeb | None = None
    if config.backend.mode in ("off", "embedded"):
        journal, flusher = None, None
        if config.backend.mode == "off":
            warn_about_backend_access(config)
            journal, flusher = open_journal(config, reactor)
        hub = RouterHub(reactor, config.router, config.backend.mode == "off", journal)
        hub.metrics = metrics
        web = RouterWeb(hub, config.router)
        router = RouterService(reactor, hub, web.site(), config.router.listen)
        router.setName("router")
        router.setServiceParent(top)
        if flusher is not None:
            flusher.setServiceParent(router)
        if config.cluster.redis:
            from architect.cluster.service import ClusterService  # needs the [cluster] extra

            shared = config.cluster
            cluster = ClusterService(
                reactor, hub, shared.redis, shared.router_id, shared.replay_length
            )
            cluster.setName("cluster")
            cluster.setServiceParent(router)
    channels: list[Channel]
    files: UploadedFiles
    if config.backend.mode == "embedded":
        assert hub is not None and web is not None
        hub.agents_to_come()  # the router listens before the backend has taken its agents back
        channels = [InProcessChannel(hub, reactor)]
        files = SharedUploads(reactor, web.uploads)
    elif config.backend.mode == "remote":
        backend_config = config.backend
        channels = [
            WebsocketChannel(
                reactor,
                url,
                token=backend_config.backend_token,
                reconnect_giveup=backend_config.reconnect_giveup,
            )
            for url in backend_config.routers
        ]
        files = downloads_from(reactor, backend_config.routers, backend_config.backend_token)
    else:
        add_admin(top, config, reactor, metrics)
        return top
    task = load_task(config)
    if config.task.onboarding and task.validate_onboarding is None:
        log.warn("[task] onboarding is on but the task has no validate_onboarding: all pass")
    warn_about_durations(config, task)

    database_service = DatabaseService(lambda: open_database(config.storage, reactor=reactor))
    database_service.setName("database")
    database_service.setServiceParent(top)

    async def start_backend() -> ClientIOHandler:
        database = await database_service.when_open()
        database.watch_commits(metrics.database_committed)
        units = config.task.units if config.task.units is not None else builtin_units()
        run = await prepare_task_run(database, config.task, units)
        settings = await restored(database, run.id, config.task)  # run-time changes kept
        run_blocking = thread_runner(reactor)
        runner = TaskRunner(
            reactor, task, run_blocking, config.task.units_per_assignment, settings.timeout
        )
        pool = StoredWorkerPool(
            reactor,
            database,
            run,
            settings,
            task,
            run_blocking,
            runner.agent_assigned,
            live_limits=LiveLimits.of(config.backend),
        )
        pool.ini_settings = config.task
        store = StoredSubmissions(database, files)
        resumption = Resumption(reactor, config.backend.resume_window, task.kind == STATIC)
        handler = ClientIOHandler(
            reactor,
            pool,
            store,
            status_interval=config.backend.status_interval,
            on_unit_submitted=runner.unit_submitted,
            resumption=resumption,
            barrier=pool.recorder.barrier,
            events=StoredConnectionEvents(database, reactor),
        )
        handler.metrics = metrics
        # Several routers share the run: any of them reaches any page (architect/cluster/).
        handler.routes.any_open_channel = len(channels) > 1
        top.parts = BackendParts(pool, store, handler, runner)
        # Before anyone is served: agents left working by the last life of the daemon are
        # taken back (this run's, within resume_window) or marked gone (all others).
        await resumption.start(database, run.id, pool.registry, runner, hub)
        if hub is not None:
            hub.agents_known()
        say_where(config, router.url if router else None)
        return handler

    backend = BackendService(
        lambda: Deferred.fromCoroutine(start_backend()), channels, on_start_failure
    )
    backend.setName("backend")
    backend.setServiceParent(top)
    hangup = UnitsOnHangup(reactor, config.path, lambda: top.pool)
    hangup.setName("units")
    hangup.setServiceParent(top)
    add_admin(top, config, reactor, metrics)
    return top


def add_admin(top: ArchitectService, config: Config, reactor: Any, metrics: Metrics) -> None:
    """The admin listener ([admin] listen), the daemon's last child: metrics, the monitor
    page and the run-time controls (architect/admin/). Off without a listen address."""
    admin = config.admin
    if not admin.listen:
        return
    if not admin.admin_token and not is_loopback_only(admin.listen):
        problem = "listens beyond this host: set admin_token, or listen on 127.0.0.1"
        raise ConfigError(config.path, "admin", "listen", problem)
    service = AdminService(reactor, top, metrics, admin.listen, admin.admin_token)
    service.setName("admin")
    service.setServiceParent(top)


def open_journal(config: Config, reactor: Any) -> tuple[Journal, FlushThread]:
    """A separate router's journal (router/journal.py), and the thread it flushes in (a
    service to start and stop with the router)."""
    flusher = FlushThread(reactor)
    try:
        journal = Journal(
            config.router.journal_dir, config.router.max_journal_bytes, flusher.offload
        )
    except OSError as e:
        raise ConfigError(
            config.path, "router", "journal_dir", f"cannot keep the journal there: {e}"
        ) from None
    flusher.journal = journal
    flusher.setName("journal")
    return journal, flusher


def warn_about_durations(config: Config, task: TaskDefinition) -> None:
    """A live assignment's timeout counts from when all its agents are there, after their
    windows began: one as long as assignment_duration is never reached."""
    settings = config.task
    if task.kind == LIVE and settings.timeout >= settings.assignment_duration:
        log.warn(
            "[task] timeout ({timeout} s) is not below assignment_duration ({duration} s):"
            " agents expire before their assignment times out; raise assignment_duration",
            timeout=settings.timeout,
            duration=settings.assignment_duration,
        )


def warn_about_backend_access(config: Config) -> None:
    """A router alone is only as safe as the way its backend gets in: say so at start."""
    if config.router.backend_token:
        return
    if config.router.trust_loopback:
        log.warn(
            "[router] trust_loopback is on: any process on this host may connect as the"
            " backend without a token, and so may every worker if a reverse proxy on this"
            " host forwards to the router; set backend_token instead"
        )
    else:
        log.error(
            "[router] backend_token is empty and trust_loopback is off: no backend can"
            " connect; set backend_token (print one with `architect token`)"
        )


def say_where(config: Config, router_url: str | None) -> None:
    """Log what a newcomer needs at start: the page to open, and where the results go."""
    if router_url is not None:
        log.info(
            "open {url} to work on the task as worker alice (change worker_id for another worker)",
            url=f"{router_url}?worker_id=alice&assignment_id=1",
        )
    log.info(
        "submissions are stored in {database}; print them with: architect results --config {path}",
        database=str(config.storage.url or config.storage.data_dir / config.storage.database),
        path=str(config.path),
    )


class _Daemon(MultiService):
    """What twistd runs: the daemon's service, with its start-up failures said in one line
    (a port that cannot be had) instead of a traceback; with `[log] format = json`, it
    gives twistd's application its log observer (architect/log_json.py)."""

    log_observer: ILogObserver | None = None

    def setServiceParent(self, parent: Any) -> None:
        # twistd starts logging after makeService, to the application's observer if it has one.
        if self.log_observer is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            sys.stderr.write(
                f"architect: cannot listen on {e.interface or '*'}:{e.port}: {e.socketError}\n"
            )
            raise SystemExit(1) from None


YOUNG_GENERATION_THRESHOLD = 10_000  # CPython's default is 700


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    def start_failed(failure: Failure) -> None:
        # e.g. the database cannot be opened: the daemon cannot work, so it ends.
        sys.stderr.write(f"architect: {failure.getErrorMessage()}\n")
        cast(Any, reactor).callLater(0, cast(Any, reactor).stop)

    # Garbage-collector pauses were the router's latency tail under load (measured: see
    # docs/benchmark-history.md). What exists once the daemon runs (modules, config, services)
    # lives as long as it does: frozen, a full collection no longer walks it. Each HTTP
    # request leaves reference cycles (Twisted's and Klein's request objects); a larger
    # first generation collects them young, before they are promoted and make the full
    # collections long.
    # What the daemon writes (the database, uploads, kept files) is for its user alone.
    os.umask(0o077)
    cast(Any, reactor).callWhenRunning(gc.freeze)
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, 10, 10)
    try:
        service_config = cast(Config, options["loaded"])
        service = build_service(service_config, reactor, start_failed)
    except ConfigError as e:
        sys.stderr.write(f"architect: {e}\n")
        raise SystemExit(2) from None
    daemon = _Daemon()
    if service_config.log.format == "json":
        daemon.log_observer = JsonLineObserver(twistd_output(getattr(options, "parent", None)))
    service.setServiceParent(daemon)
    return daemon
