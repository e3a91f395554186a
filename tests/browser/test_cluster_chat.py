"""The real mephisto-task 2.0.4 in Chromium through haproxy (conf/haproxy.cfg) in front of
two routers sharing the run through redis-server, our backend linked to both: a live chat
between two workers whose pages' requests and sockets are balanced over both routers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import pytest_twisted

from architect.config import BackendConfig, Config, RouterConfig, StorageConfig, TaskConfig
from tests.browser.support import HERE, Launcher, write_task_module
from tests.browser.tasks import CHAT_TASK
from tests.browser.test_live_chat import agent_id_of, chat
from tests.clients import wait_for
from tests.daemon import Daemon
from tests.load_balancers import HAProxy
from tests.redis_server import RedisServer, redis_server
from tests.test_cluster_balanced import TOKEN, holder, router_config

__all__ = ["redis_server"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def balancers() -> Iterator[list[HAProxy]]:
    started: list[HAProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def backend_config(folder: Path, routers: list[Daemon]) -> Config:
    folder.mkdir(parents=True, exist_ok=True)
    module = write_task_module(folder, CHAT_TASK)
    units = ({"room": "the blue room", "text": "Chat with your partner: say hello."},)
    return Config(
        path=folder / "backend.ini",
        router=RouterConfig(upload_dir=folder / "unused"),
        backend=BackendConfig(
            mode="remote",
            router_urls=tuple(r.ws_url for r in routers),
            backend_token=TOKEN,
            status_interval=0.5,
        ),
        storage=StorageConfig(data_dir=folder / "data"),
        task=TaskConfig(name="browser", module=str(module), units=units, units_per_assignment=2),
    )


@pytest_twisted.ensureDeferred
async def test_a_live_chat_across_routers(
    launcher: Launcher, tmp_path: Path, redis_server: RedisServer, balancers: list[HAProxy]
) -> None:
    routers = []
    for name in ("r1", "r2"):
        config = router_config(tmp_path / name, redis_server, name)
        task_config = {"task_title": "Browser test task"}
        served = attrs.evolve(config.router, static_dir=HERE, task_config=task_config)
        routers.append(await launcher.start(attrs.evolve(config, router=served)))
    backend = await launcher.start(backend_config(tmp_path / "backend", routers))
    await wait_for(lambda: all(r.hub.backend is not None for r in routers), "the backend on both")
    proxy = HAProxy(tmp_path / "haproxy", [r.port for r in routers])
    balancers.append(proxy)
    proxy.start()
    pages = launcher.pages_for(proxy.port)

    alice, bob = await chat(pages, "mephisto_live.html")  # every request balanced

    crossings = []
    for handle in (alice, bob):
        agent_id = await agent_id_of(pages, handle)
        socket_on = holder(routers, agent_id)
        assert socket_on is not None
        registered_on = backend.handler.routes.channels[agent_id].channel_id
        crossings.append(registered_on != socket_on.ws_url)
    assert any(crossings), "no page's socket was on another router than its registration"
    assert alice.errors == [] and bob.errors == []
