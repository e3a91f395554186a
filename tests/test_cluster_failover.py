"""Failover: one of two router processes behind haproxy is killed with SIGKILL under work.
Its page reconnects through haproxy to the other router and carries on (its status, the
live updates replayed from Redis, new ones); what was acknowledged before is stored;
registrations go on; its page that never comes back is called disconnect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from architect.cluster.shared_state import SharedState
from architect.protocol import ALIVE, MEPHISTO_BOUND_LIVE_UPDATE, Status
from architect.redis_url import RedisAddress
from tests.clients import wait_for
from tests.daemon import Daemons
from tests.load_balancers import HAProxy
from tests.redis_server import RedisServer, free_port, redis_server
from tests.router_process import RouterProcess
from tests.test_backend_integration import LIVE_ECHO_TASK
from tests.test_cluster_balanced import TOKEN, backend_config, browsers, echoes, register

__all__ = ["redis_server"]

pytestmark = pytest.mark.slow


@pytest.fixture
def routers(tmp_path: Path, redis_server: RedisServer) -> Iterator[dict[str, RouterProcess]]:
    made = {
        name: RouterProcess(tmp_path / name, free_port(), redis_server.port, name, TOKEN)
        for name in ("r1", "r2")
    }
    try:
        for router in made.values():
            router.start()
        yield made
    finally:
        for router in made.values():
            router.stop()


@pytest.fixture
def proxy(tmp_path: Path, routers: dict[str, RouterProcess]) -> Iterator[HAProxy]:
    started = HAProxy(tmp_path / "haproxy", [r.port for r in routers.values()])
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest_twisted.ensureDeferred
async def test_a_router_killed_under_work(
    tmp_path: Path,
    daemons: Daemons,
    redis_server: RedisServer,
    routers: dict[str, RouterProcess],
    proxy: HAProxy,
) -> None:
    (tmp_path / "echo_task.py").write_text(LIVE_ECHO_TASK)
    urls = [r.ws_url for r in routers.values()]
    backend = await daemons.start(
        backend_config(tmp_path / "backend", urls, tmp_path / "echo_task.py")
    )
    await wait_for(lambda: all(c.is_open for c in backend.channels), "the backend on both")
    redis = SharedState(RedisAddress("127.0.0.1", redis_server.port, 0, None), "test", 1)
    await redis.start(lambda *_: None)
    try:
        workers = browsers()
        agent_id = await register(workers, proxy.url, "w1")
        page = await workers.of_agent(agent_id).open_socket(proxy.port)
        page.send(ALIVE, agent_id)
        await wait_for(lambda: Status.IN_TASK in page.statuses(), "the page in task")
        page.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "text": "before"})
        await wait_for(lambda: echoes(page), "the echo before the kill")
        # Another worker's submission, acknowledged before the kill.
        other = await register(workers, proxy.url, "w2")
        code, _ = await workers.of_agent(other).post_json(
            f"{proxy.url}/submit_task", {"USED_AGENT_ID": other, "final_data": {"kept": True}}
        )
        assert code == 200

        holder = await redis.socket_holder(agent_id)
        # A page on the same router that will not come back (its worker left meanwhile).
        leaver = await register(workers, proxy.url, "w4")
        leaving = await workers.of_agent(leaver).open_socket(routers[holder].port)
        leaving.send(ALIVE, leaver)
        await wait_for(lambda: Status.IN_TASK in leaving.statuses(), "the leaver in task")
        routers[holder].kill()
        await wait_for(lambda: page.has_closed, "the page to lose its socket")
        survivor = next(name for name in routers if name != holder)

        # mephisto-task reconnects; haproxy sends it to the router still alive.
        page = await workers.of_agent(agent_id).open_socket(proxy.port)
        page.send(ALIVE, agent_id)
        await wait_for(lambda: Status.IN_TASK in page.statuses(), "its status from the survivor")
        await wait_for(lambda: echoes(page), "the echo replayed from Redis")
        assert echoes(page) == [{"update_id": "u1", "text": "before"}]
        assert await redis.socket_holder(agent_id) == survivor
        page.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u2", "text": "after"})
        await wait_for(lambda: len(echoes(page)) == 2, "a new echo after the failover")
        assert backend.agent(agent_id).status == Status.IN_TASK

        [stored] = await backend.database.list_submissions(agent_id=other)
        assert stored.data == {"kept": True}
        newcomer = await register(workers, proxy.url, "w3")  # registrations go on
        assert newcomer
        # The survivor finds the killed router stopped beating (10 s), takes its sockets
        # over and waits disconnect_grace (1 s) for the leaver's page: it never comes.
        await wait_for(
            lambda: backend.has_status(leaver, Status.DISCONNECT), "the leaver's end", 30
        )
        assert backend.agent(agent_id).status == Status.IN_TASK
        await page.close()
    finally:
        await redis.stop()
