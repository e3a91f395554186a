"""Real parts: redis-server, two routers (mode off, [cluster] redis), our backend linked to
both ([backend] router_urls), and a load balancer round-robin in front: haproxy
(conf/haproxy.cfg) or nginx (conf/nginx.conf). Workers register, connect and submit
through it, each request on whichever router it reaches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.web.client import HTTPConnectionPool

from architect.config import (
    BackendConfig,
    ClusterConfig,
    Config,
    RouterConfig,
    StorageConfig,
    TaskConfig,
)
from architect.protocol import (
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    MEPHISTO_BOUND_LIVE_UPDATE,
    Status,
)
from tests.clients import Browsers, PacketClient, wait_for
from tests.daemon import Daemon, Daemons, on_port, reactor
from tests.load_balancers import HAProxy, Nginx
from tests.redis_server import RedisServer, free_port, redis_server
from tests.test_backend_integration import LIVE_ECHO_TASK
from tests.test_journal_integration import TOKEN
from tests.test_journal_integration import router_config as journal_router_config

__all__ = ["redis_server"]


def router_config(folder: Path, redis: RedisServer, name: str) -> Config:
    """A separate router with its journal (as test_journal_integration's), in the cluster."""
    config = journal_router_config(folder)
    # Every worker comes from the load balancer's address.
    router = attrs.evolve(config.router, max_connections_per_address=0)
    cluster = ClusterConfig(redis=f"redis://127.0.0.1:{redis.port}/0", router_id=name)
    return attrs.evolve(config, router=router, cluster=cluster)


def backend_config(folder: Path, routers: list[str], module: Path) -> Config:
    return Config(
        path=folder / "backend.ini",
        router=RouterConfig(upload_dir=folder / "unused"),
        backend=BackendConfig(
            mode="remote", router_urls=tuple(routers), backend_token=TOKEN, status_interval=0.2
        ),
        storage=StorageConfig(data_dir=folder / "data"),
        task=TaskConfig(name="cluster-test", module=str(module)),
    )


BALANCERS: dict[str, type[HAProxy] | type[Nginx]] = {"haproxy": HAProxy, "nginx": Nginx}


@pytest.fixture
def balancers() -> Iterator[list[HAProxy | Nginx]]:
    """Started by the test (once its routers listen), stopped after it."""
    started: list[HAProxy | Nginx] = []
    yield started
    for proxy in started:
        proxy.stop()


def browsers() -> Browsers:
    return Browsers(HTTPConnectionPool(reactor, persistent=False))


async def register(workers: Browsers, base: str, worker: str) -> str:
    browser = workers.of_worker(worker)
    provider_data = {"worker_name": worker, "assignment_id": f"a-{worker}", "provider_type": "mock"}
    code, answer = await browser.post_json(
        f"{base}/request_agent", {"provider_data": provider_data, "client_timestamp": time.time()}
    )
    assert code == 200, answer
    workers.registered(answer["data"], browser)
    agent_id: str = answer["data"]["agent_id"]
    assert isinstance(agent_id, str), answer
    return agent_id


def holder(routers: list[Daemon], agent_id: str) -> Daemon | None:
    for router in routers:
        if agent_id in router.hub.link_agents.values():
            return router
    return None


def in_task(page: PacketClient) -> bool:
    return Status.IN_TASK in page.statuses()


def echoes(page: PacketClient) -> list[Any]:
    return [p.data["echo"] for p in page.of_type(CLIENT_BOUND_LIVE_UPDATE) if "echo" in p.data]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("balancer", list(BALANCERS))
async def test_workers_through_a_load_balancer_on_two_routers(
    tmp_path: Path,
    daemons: Daemons,
    redis_server: RedisServer,
    balancers: list[HAProxy | Nginx],
    balancer: str,
) -> None:
    routers = [
        await daemons.start(router_config(tmp_path / name, redis_server, name))
        for name in ("r1", "r2")
    ]
    (tmp_path / "echo_task.py").write_text(LIVE_ECHO_TASK)
    backend_settings = backend_config(
        tmp_path / "backend", [r.ws_url for r in routers], tmp_path / "echo_task.py"
    )
    backend = await daemons.start(backend_settings)
    await wait_for(lambda: all(r.hub.backend is not None for r in routers), "the backend on both")
    proxy = BALANCERS[balancer](tmp_path / balancer, [r.port for r in routers])
    balancers.append(proxy)
    proxy.start()

    workers = browsers()
    pages: dict[str, PacketClient] = {}
    for worker in ("w1", "w2"):
        if pages:  # one request more: this worker's socket goes where its registration did not
            assert (await workers.of_worker(worker).http.get(f"{proxy.url}/is_alive")).code == 200
        agent_id = await register(workers, proxy.url, worker)
        page = await workers.of_agent(agent_id).open_socket(proxy.port)
        pages[agent_id] = page
        page.send(ALIVE, agent_id)
        await wait_for(partial(in_task, page), f"{worker} in task")
    holders = {agent_id: holder(routers, agent_id) for agent_id in pages}
    assert None not in holders.values()
    # Round-robin, request by request: w1 registered on one router, its socket on the other;
    # w2 registered on the second, its socket on the first.
    assert len(set(holders.values())) == 2, "the two sockets are on different routers"
    for agent_id, socket_router in holders.items():
        registered_on = backend.handler.routes.channels[agent_id].channel_id
        assert socket_router is not None and registered_on != socket_router.ws_url  # it crosses

    for n, (agent_id, page) in enumerate(pages.items()):
        page.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": f"u{n}", "text": n})
        await wait_for(partial(echoes, page), "the task's echo through the other router")
        assert echoes(page) == [{"update_id": f"u{n}", "text": n}]

    for agent_id in pages:
        code, answer = await workers.of_agent(agent_id).post_json(
            f"{proxy.url}/submit_task", {"USED_AGENT_ID": agent_id, "final_data": {"a": 1}}
        )
        assert (code, answer) == (200, {"status": "Submitted!"})
        [stored] = await backend.database.list_submissions(agent_id=agent_id)
        assert stored.data == {"a": 1}
    for page in pages.values():
        await page.close()


@pytest_twisted.ensureDeferred
async def test_a_router_started_after_the_registration_takes_the_error_and_the_submission(
    tmp_path: Path, daemons: Daemons, redis_server: RedisServer
) -> None:
    """It heard none of the agent's news: it asks Redis, not its backend, and the page's
    error report, then the worker's submission, are taken (not 404)."""
    first = await daemons.start(router_config(tmp_path / "r1", redis_server, "r1"))
    late_port = free_port()
    late = router_config(tmp_path / "r3", redis_server, "r3")
    late = attrs.evolve(late, router=attrs.evolve(late.router, listen=on_port(late_port)))
    (tmp_path / "echo_task.py").write_text(LIVE_ECHO_TASK)
    urls = [first.ws_url, f"ws://127.0.0.1:{late_port}/"]
    backend = await daemons.start(
        backend_config(tmp_path / "backend", urls, tmp_path / "echo_task.py")
    )
    await wait_for(lambda: first.hub.backend is not None, "the backend on the first router")
    workers = browsers()
    agent_id = await register(workers, first.url, "w1")
    third = await daemons.start(late)
    await wait_for(lambda: third.hub.backend is not None, "the backend on the late router", 15)
    code, answer = await workers.of_agent(agent_id).post_json(
        f"{third.url}/log_error", {"USED_AGENT_ID": agent_id, "error_data": {"e": "late"}}
    )
    assert (code, answer) == (200, {"status": "Error log sent!"})
    assert third.hub.agents.get(agent_id) is not None  # learnt from Redis
    code, answer = await workers.of_agent(agent_id).post_json(
        f"{third.url}/submit_task", {"USED_AGENT_ID": agent_id, "final_data": {"late": 1}}
    )
    assert (code, answer) == (200, {"status": "Submitted!"})
    [stored] = await backend.database.list_submissions(agent_id=agent_id)
    assert stored.data == {"late": 1}
