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


@pytest_twisted.ensureDeferred
async def test_no_acknowledged_submission_is_lost_with_a_router_killed_for_good(
    tmp_path: Path,
    daemons: Daemons,
    routers: dict[str, RouterProcess],
    proxy: HAProxy,
) -> None:
    # The backend reaches r2 only: r1 has no backend to store what it is sent, so a
    # submission there could only sit in r1's journal, on r1's disk, when r1 is killed
    # and never comes back.
    (tmp_path / "echo_task.py").write_text(LIVE_ECHO_TASK)
    r1, r2 = routers["r1"], routers["r2"]
    backend = await daemons.start(
        backend_config(tmp_path / "backend", [r2.ws_url], tmp_path / "echo_task.py")
    )
    await wait_for(lambda: all(c.is_open for c in backend.channels), "the backend on r2")
    workers = browsers()
    r2_url = f"http://127.0.0.1:{r2.port}"
    agents = [await register(workers, r2_url, f"w{n}") for n in range(4)]

    async def submit(agent_id: str, base: str) -> int:
        body = {"USED_AGENT_ID": agent_id, "final_data": {"by": agent_id}}
        try:
            code, _ = await workers.of_agent(agent_id).post_json(f"{base}/submit_task", body)
        except Exception:  # the router died under the request: not acknowledged
            return 0
        return code

    acknowledged = set()
    for agent_id in agents[:3]:
        if await submit(agent_id, f"http://127.0.0.1:{r1.port}") == 200:
            acknowledged.add(agent_id)
    if await submit(agents[3], r2_url) == 200:
        acknowledged.add(agents[3])
    assert acknowledged == {agents[3]}  # r1 said to submit again: its backend is away
    r1.kill()  # for good

    # Each worker not acknowledged submits again, through haproxy, until it is.
    for agent_id in set(agents) - acknowledged:

        async def taken(agent_id: str = agent_id) -> bool:
            return await submit(agent_id, proxy.url) == 200

        await wait_for(taken, f"the submission of {agent_id} through the survivor", 20)
    for agent_id in agents:
        stored = await backend.database.list_submissions(agent_id=agent_id)
        assert [s.data for s in stored] == [{"by": agent_id}], agent_id
