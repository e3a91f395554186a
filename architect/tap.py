"""twistd options and makeService: the one place that wires the parts together."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import attrs
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from architect.backend.channel import Channel
from architect.backend.client_io import ClientIOHandler
from architect.backend.downloads import RouterDownloads
from architect.backend.files import UploadDirFiles, UploadedFiles
from architect.backend.resume import Resumption
from architect.backend.service import BackendService
from architect.backend.store import StoredSubmissions
from architect.backend.websocket_channel import WebsocketChannel
from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import Config, ConfigError, load_config
from architect.embedded import InProcessChannel
from architect.router.hub import RouterHub
from architect.router.service import RouterService
from architect.router.web import RouterWeb
from architect.storage import Database, open_database
from architect.tasks.definition import STATIC, TaskDefinition, WorkerInfo
from architect.tasks.hooks import TaskModuleError, in_reactor, load_task_module, thread_runner
from architect.tasks.runner import TaskRunner

log = Logger()


# The shipped conf/router.ini runs the demo task of architect/demo/ (all three kinds on one
# page). A config naming no task module or units file gets the plain static task below.


def demo_units(count: int = 10) -> list[dict[str, Any]]:
    """The units a backend serves without a configured units file: short texts to read."""
    return [
        {"text": f"Demo unit {n} of {count}: read this sentence, then submit."}
        for n in range(1, count + 1)
    ]


DEMO_ONBOARDING_ANSWER = "ready"


@in_reactor
def _demo_onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
    return {"question": f"Type {DEMO_ONBOARDING_ANSWER!r} to start working."}


@in_reactor
def _demo_validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
    return str(data.get("answer", "")).strip().lower() == DEMO_ONBOARDING_ANSWER


def demo_task() -> TaskDefinition:
    """The hooks used without a task module: a static task, a one-question onboarding."""
    return TaskDefinition(
        name="demo",
        onboarding_data=_demo_onboarding_data,
        validate_onboarding=_demo_validate_onboarding,
    )


def load_task(config: Config) -> TaskDefinition:
    """The task module's hooks, or the plain static task's; a ConfigError naming [task] module."""
    if config.task.module is None:
        return demo_task()
    try:
        return TaskDefinition.from_module(
            load_task_module(config.task.module, config.path.resolve().parent)
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


class ArchitectService(MultiService):
    """The daemon's top service.

    `hub` is the router's hub when this process runs a router; `backend_service`
    when it runs a backend, whose parts (`database`, `pool`, `store`, `backend`)
    are set once the database is open.
    """

    hub: RouterHub | None = None
    backend_service: BackendService | None = None
    database: Database | None = None
    pool: StoredWorkerPool | None = None
    store: StoredSubmissions | None = None
    backend: ClientIOHandler | None = None

    def when_ready(self) -> Deferred[ClientIOHandler]:
        """Fires once the backend serves (its database open, its channels opening)."""
        if self.backend_service is None:
            return fail(RuntimeError("this process runs no backend"))
        return self.backend_service.when_ready()


def build_service(
    config: Config,
    reactor: Any,
    on_start_failure: Callable[[Failure], None] | None = None,
) -> ArchitectService:
    """The daemon's services from the config; a ConfigError if the task module is unusable."""
    top = ArchitectService()
    router: RouterService | None = None
    if config.backend.mode in ("off", "embedded"):
        top.hub = RouterHub(reactor, config.router)
        web = RouterWeb(top.hub, config.router)
        router = RouterService(reactor, top.hub, web.site(), config.router.listen)
        router.setName("router")
        router.setServiceParent(top)
    channel: Channel
    files: UploadedFiles
    if config.backend.mode == "embedded":
        assert top.hub is not None
        channel = InProcessChannel(top.hub, reactor)
        files = UploadDirFiles(reactor, config.router.upload_dir)
    elif config.backend.mode == "remote":
        channel = WebsocketChannel(
            reactor,
            config.backend.router_url,
            token=config.backend.backend_token,
            reconnect_giveup=config.backend.reconnect_giveup,
        )
        files = RouterDownloads(reactor, config.backend.router_url, config.backend.backend_token)
    else:
        return top
    task = load_task(config)
    if config.task.onboarding and task.validate_onboarding is None:
        log.warn("[task] onboarding is on but the task has no validate_onboarding: all pass")

    async def start_backend() -> ClientIOHandler:
        # A relative data_dir (a Config built in code) is taken beside the config file too.
        data_dir = config.path.resolve().parent / config.storage.data_dir
        storage = attrs.evolve(config.storage, data_dir=data_dir)
        database = await open_database(storage, reactor=reactor)
        top.database = database
        units = config.task.units if config.task.units is not None else demo_units()
        run = await prepare_task_run(database, config.task, units)
        run_blocking = thread_runner(reactor)
        runner = TaskRunner(
            reactor, task, run_blocking, config.task.units_per_assignment, config.task.timeout
        )
        top.pool = StoredWorkerPool(
            reactor, database, run, config.task, task, run_blocking, runner.agent_assigned
        )
        top.store = StoredSubmissions(database, files)
        resumption = Resumption(reactor, config.backend.resume_window, task.kind == STATIC)
        top.backend = ClientIOHandler(
            reactor,
            top.pool,
            top.store,
            status_interval=config.backend.status_interval,
            on_unit_submitted=runner.unit_submitted,
            resumption=resumption,
        )
        # Before anyone is served: agents left working by the last life of the daemon are
        # taken back (this run's, within resume_window) or marked gone (all others).
        await resumption.start(database, run.id, top.pool.registry, runner, top.hub)
        say_where(config, data_dir / config.storage.database, router.url if router else None)
        return top.backend

    def stop_backend() -> Deferred[None]:
        database, top.database = top.database, None
        return succeed(None) if database is None else database.close()

    backend = BackendService(
        lambda: Deferred.fromCoroutine(start_backend()),
        [channel],
        stop_backend,
        on_start_failure,
    )
    backend.setName("backend")
    backend.setServiceParent(top)
    top.backend_service = backend
    return top


def say_where(config: Config, database: Path, router_url: str | None) -> None:
    """Log what a newcomer needs at start: the page to open, and where the results go."""
    if router_url is not None:
        log.info(
            "open {url} to work on the task as worker alice (change worker_id for another worker)",
            url=f"{router_url}?worker_id=alice&assignment_id=1",
        )
    log.info(
        "submissions are stored in {database}; print them with: architect results --config {path}",
        database=str(database),
        path=str(config.path),
    )


YOUNG_GENERATION_THRESHOLD = 10_000  # CPython's default is 700


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    def start_failed(failure: Failure) -> None:
        # e.g. the database cannot be opened: the daemon cannot work, so it ends.
        sys.stderr.write(f"architect: {failure.getErrorMessage()}\n")
        cast(Any, reactor).callLater(0, cast(Any, reactor).stop)

    # Garbage-collector pauses were the router's latency tail under load (measured: see
    # docs/BENCHMARKS.md). What exists once the daemon runs (modules, config, services)
    # lives as long as it does: frozen, a full collection no longer walks it. Each HTTP
    # request leaves reference cycles (Twisted's and Klein's request objects); a larger
    # first generation collects them young, before they are promoted and make the full
    # collections long.
    cast(Any, reactor).callWhenRunning(gc.freeze)
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, 10, 10)
    try:
        return build_service(cast(Config, options["loaded"]), reactor, start_failed)
    except ConfigError as e:
        sys.stderr.write(f"architect: {e}\n")
        raise SystemExit(2) from None
