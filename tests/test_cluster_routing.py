"""Two router hubs sharing one run through a real redis-server (architect/cluster/routing.py):
a page registered on one router and connected to the other gets its statuses and live
updates; a page that moves takes its replay along and the old router lets go of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock

from architect.cluster.routing import BEAT_EVERY, ClusterRouting
from architect.cluster.shared_state import SharedState
from architect.config import RouterConfig
from architect.connection_events import ConnectionEventKind as Kind
from architect.protocol import (
    AGENT_DETAILS,
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    EVENTS,
    HEARTBEAT,
    MEPHISTO,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    UPDATE_STATUS,
    CloseCode,
    Packet,
    Status,
)
from architect.redis_url import RedisAddress
from architect.router.hub import RouterHub
from architect.router.state import AgentRecord
from tests.clients import wait_for
from tests.fakes import FakeLink
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]

SESSION = "s" * 32  # one browser's session cookie (router/sessions.py)


class Router:
    """A hub on a fake clock, its backend a FakeLink, in the cluster."""

    def __init__(self, tmp_path: Path, name: str, port: int) -> None:
        self.clock = Clock()
        config = RouterConfig(upload_dir=tmp_path / name, trust_loopback=True)
        self.hub = RouterHub(self.clock, config)
        self.backend = FakeLink(f"backend-{name}")
        takes_events = Packet(ALIVE, MEPHISTO, {"extensions": [EVENTS]})
        self.hub.link_packet(self.backend, takes_events, from_loopback=True)
        self.hub.agents_known()  # as once its backend answered a request_statuses twice
        shared = SharedState(RedisAddress("127.0.0.1", port, 0, None), name, 5)
        self.cluster = ClusterRouting(shared, self.hub, self.clock)

    async def register(self, agent_id: str) -> dict[str, Any]:
        asked = self.hub.request_agent({"worker_name": "w"}, 1.0, SESSION)
        request = self.backend.of_type(REGISTER_AGENT)[-1]
        answer = {"request_id": request.data["request_id"], "agent_id": agent_id}
        self.hub.link_packet(self.backend, Packet(AGENT_DETAILS, request.subject_id, answer))
        result: dict[str, Any] = await asked
        return result

    def from_backend(self, packet_type: str, agent_id: str, data: dict[str, Any]) -> None:
        self.hub.link_packet(self.backend, Packet(packet_type, agent_id, data))

    def page(self, agent_id: str, session: str = SESSION) -> FakeLink:
        link = FakeLink(f"page-{agent_id}")
        self.hub.link_opened(link)
        self.hub.link_packet(link, Packet(ALIVE, agent_id), session=session)
        return link


@pytest_twisted.async_yield_fixture
async def routers(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Router]]:
    made = [Router(tmp_path, name, redis_server.port) for name in ("a", "b")]
    for router in made:
        await router.cluster.start()
    yield made
    for router in made:
        await router.cluster.stop()
        router.hub.stop()


def known(router: Router, agent_id: str = "agent-1") -> AgentRecord:
    """The router's record of an agent it must know."""
    found = router.hub.agents.get(agent_id)
    assert found is not None, f"{agent_id} unknown to the router"
    return found


def noted(router: Router, agent_id: str) -> list[tuple[str, int | None]]:
    """The connection events the router noted for the agent, waiting for its backend."""
    return [(e.event, e.code) for e in router.hub.events.waiting if e.agent_id == agent_id]


def live(link: FakeLink) -> list[Any]:
    return [p.data for p in link.of_type(CLIENT_BOUND_LIVE_UPDATE)]


def statuses(link: FakeLink) -> list[str]:
    return [p.data["status"] for p in link.of_type(UPDATE_STATUS)]


async def in_task(registering: Router, connected: Router, agent_id: str) -> FakeLink:
    """An agent registered on one router, in task, its page's socket taken by another (or
    the same); that page."""
    await registering.register(agent_id)
    registering.from_backend(UPDATE_STATUS, agent_id, {"status": Status.IN_TASK})
    page = connected.page(agent_id)
    await wait_for(lambda: page in connected.hub.link_agents, "the router to take the socket")
    return page


async def held_by(router: Router, agent_id: str, holder: str) -> bool:
    """Whether Redis says `holder` holds the agent's socket (asked through `router`)."""
    return bool(await router.cluster.shared.socket_holder(agent_id) == holder)


@pytest_twisted.ensureDeferred
async def test_a_page_on_the_other_router_gets_its_statuses_and_live_updates(
    routers: list[Router],
) -> None:
    a, b = routers
    answer = await a.register("agent-1")
    assert answer["data"]["agent_id"] == "agent-1"
    # The other router knows the agent and its browser (told, or asking Redis).
    stranger = b.page("agent-1", session="t" * 32)
    await wait_for(lambda: stranger.closed, "b to refuse another browser's socket")
    assert stranger.close_code == CloseCode.NOT_YOURS
    page = b.page("agent-1")
    await wait_for(lambda: b.hub.link_agents.get(page) == "agent-1", "b to take the socket")
    await wait_for(lambda: a.cluster.shared.socket_holder("agent-1"), "b to hold the socket")
    assert await a.cluster.shared.socket_holder("agent-1") == "b"

    a.from_backend(UPDATE_STATUS, "agent-1", {"status": Status.IN_TASK})
    a.from_backend(CLIENT_BOUND_LIVE_UPDATE, "agent-1", {"update_id": "u1", "text": "hi"})
    await wait_for(lambda: live(page), "the live update to cross routers")
    assert live(page) == [{"update_id": "u1", "text": "hi"}]
    assert statuses(page) == [Status.IN_TASK]
    assert known(b).status == Status.IN_TASK
    # Router a never had the page: nothing waits there for a socket that will not come.
    assert known(a).outbox is None

    # Heartbeats on b are answered with the status a was told.
    b.hub.link_packet(page, Packet(HEARTBEAT, "agent-1"))
    assert page.of_type(HEARTBEAT)[-1].data["status"] == Status.IN_TASK
    # A status b finds itself (its page gone past the grace) reaches a, which answers
    # its backend's request_statuses with it.
    b.hub.link_lost(page)
    b.clock.advance(b.hub.config.disconnect_grace + 1)
    await wait_for(
        lambda: known(a).status == Status.DISCONNECT,
        "a to learn the disconnect",
    )


@pytest_twisted.ensureDeferred
async def test_a_page_that_moves_gets_the_replay_and_the_old_router_lets_go(
    routers: list[Router],
) -> None:
    a, b = routers
    await a.register("agent-1")
    a.from_backend(UPDATE_STATUS, "agent-1", {"status": Status.IN_TASK})
    old = b.page("agent-1")
    await wait_for(lambda: b.hub.link_agents.get(old) == "agent-1", "b to take the socket")
    await wait_for(lambda: a.cluster.shared.socket_holder("agent-1"), "b to hold the socket")
    b.hub.link_packet(old, Packet(HEARTBEAT, "agent-1"))
    a.from_backend(CLIENT_BOUND_LIVE_UPDATE, "agent-1", {"update_id": "u1"})
    await wait_for(lambda: live(old), "the live update on b")

    new = a.page("agent-1")  # its page reconnected, and the load balancer chose a
    await wait_for(lambda: old.closed, "b to let go of the old socket")
    assert old.close_code == CloseCode.MOVED
    # b says the socket closed because the page moved, a that a socket opened there.
    assert noted(b, "agent-1")[-1] == (Kind.SOCKET_CLOSE, CloseCode.MOVED)
    assert noted(a, "agent-1") == [(Kind.SOCKET_OPEN, None)]
    await wait_for(lambda: live(new), "the replay on a")
    assert live(new) == [{"update_id": "u1"}]
    assert statuses(new) == [Status.IN_TASK]
    # b's timers for the page are gone: it does not call the agent disconnected.
    b.hub.link_lost(old)
    b.clock.advance(b.hub.config.heartbeat_timeout + b.hub.config.disconnect_grace + 1)
    assert known(b).status == Status.IN_TASK
    # From now on what the backend sends through b reaches the page on a.
    b.from_backend(CLIENT_BOUND_LIVE_UPDATE, "agent-1", {"update_id": "u2"})
    await wait_for(lambda: len(live(new)) == 2, "u2 through b to a")
    assert live(new)[-1] == {"update_id": "u2"}


@pytest_twisted.ensureDeferred
async def test_without_redis_a_router_serves_its_own_agents(
    routers: list[Router], redis_server: RedisServer
) -> None:
    a, _ = routers
    redis_server.stop()
    await wait_for(lambda: not a.cluster.shared.is_up, "the router to notice Redis has gone")
    answer = await a.register("agent-1")  # answered, though the others cannot be told
    assert answer["data"]["agent_id"] == "agent-1"
    page = a.page("agent-1")
    a.from_backend(CLIENT_BOUND_LIVE_UPDATE, "agent-1", {"update_id": "u1"})
    assert live(page) == [{"update_id": "u1"}]
    assert a.hub.metrics.value("architect_redis_errors_total") > 0


@pytest_twisted.ensureDeferred
async def test_a_router_started_later_learns_an_agent_from_redis(
    routers: list[Router], tmp_path: Path, redis_server: RedisServer
) -> None:
    a, _ = routers
    await a.register("agent-1")
    c = Router(tmp_path, "c", redis_server.port)
    await c.cluster.start()
    try:
        assert c.hub.agents.get("agent-1") is None  # it heard none of the news
        assert await c.cluster.learn("agent-1") is True
        record = c.hub.agents.get("agent-1")
        assert record is not None and record.session == SESSION
        assert await c.cluster.learn("agent-2") is False
        assert await c.cluster.learn("x" * 1000) is False
        assert await c.cluster.learn(None) is False
    finally:
        await c.cluster.stop()
        c.hub.stop()


@pytest_twisted.ensureDeferred
async def test_the_pages_of_a_router_that_stopped_beating_have_the_grace_to_come_back(
    routers: list[Router], tmp_path: Path, redis_server: RedisServer
) -> None:
    a, b = routers
    for agent_id in ("back", "gone"):
        await in_task(a, b, agent_id)

    async def holders() -> list[str | None]:
        return [await a.cluster.shared.socket_holder(x) for x in ("back", "gone")]

    await wait_for(lambda: holders(), "b to hold both sockets")
    assert await holders() == ["b", "b"]
    await b.cluster.stop(say_gone=False)  # killed: it tells no one, its sockets stay its own
    await a.cluster.shared._commands.delete("architect:alive:b")  # its last beat ran out
    a.clock.advance(BEAT_EVERY)

    async def taken_over() -> bool:
        return await holders() == ["a", "a"]

    await wait_for(taken_over, "a to take b's sockets over")
    gone = a.hub.agents.get("gone")
    await wait_for(lambda: gone is not None and gone.grace_timer, "a to wait for the pages")
    c = Router(tmp_path, "c", redis_server.port)  # one page comes back through c
    await c.cluster.start()
    try:
        page = c.page("back")
        await wait_for(lambda: page in c.hub.link_agents, "c to take the page back")
        await wait_for(lambda: known(a, "back").grace_timer is None, "a told")
        a.clock.advance(a.hub.config.disconnect_grace + 1)
        assert known(a, "back").status == Status.IN_TASK
        assert known(a, "gone").status == Status.DISCONNECT

        def told_to_c() -> bool:
            record = c.hub.agents.get("gone")
            return record is not None and record.status == Status.DISCONNECT

        await wait_for(told_to_c, "the other routers to learn it")
    finally:
        await c.cluster.stop()
        c.hub.stop()


@pytest_twisted.ensureDeferred
async def test_a_router_taken_for_gone_holds_its_sockets_again(routers: list[Router]) -> None:
    a, b = routers
    page = await in_task(a, a, "agent-1")
    await wait_for(lambda: held_by(a, "agent-1", "a"), "a to hold it")
    await a.cluster.shared._commands.delete("architect:alive:a")  # a stalled past its beat
    b.clock.advance(BEAT_EVERY)
    await wait_for(lambda: held_by(a, "agent-1", "b"), "b to take a's sockets over")
    record = b.hub.agents.get("agent-1")
    await wait_for(lambda: record is not None and record.grace_timer, "b to wait for the page")
    a.clock.advance(BEAT_EVERY)  # a beats again and finds it was taken for gone
    await wait_for(lambda: held_by(a, "agent-1", "a"), "a to hold its socket again")
    await wait_for(lambda: known(b).grace_timer is None, "b told")
    b.clock.advance(b.hub.config.disconnect_grace + 1)
    assert known(b).status == Status.IN_TASK
    assert not page.closed


@pytest_twisted.ensureDeferred
async def test_a_page_that_lost_its_socket_and_came_back_through_another_router_carries_on(
    routers: list[Router],
) -> None:
    a, b = routers
    old = await in_task(a, b, "agent-1")
    b.hub.link_packet(old, Packet(HEARTBEAT, "agent-1"))
    b.hub.link_lost(old)  # a network blip: the socket closed, b's grace runs
    new = a.page("agent-1")  # the page reconnects; the load balancer chose a
    await wait_for(lambda: new in a.hub.link_agents, "a to take the socket")
    await wait_for(lambda: known(b).grace_timer is None, "b told")
    b.clock.advance(b.hub.config.disconnect_grace + b.hub.config.heartbeat_timeout + 1)
    assert known(b).status == Status.IN_TASK
    assert known(a).status == Status.IN_TASK


@pytest_twisted.ensureDeferred
async def test_a_router_that_stops_says_so(routers: list[Router]) -> None:
    a, b = routers
    await in_task(a, b, "agent-1")
    await wait_for(lambda: held_by(a, "agent-1", "b"), "b to hold it")
    await b.cluster.stop()  # its drain sent the page away first; it did not come back yet
    a.clock.advance(BEAT_EVERY)  # no waiting for b's beat to run out
    await wait_for(lambda: held_by(a, "agent-1", "a"), "a to take b's sockets over")


def answered(router: Router) -> dict[str, str]:
    """What the router answers its backend's request_statuses with."""
    before = len(router.backend.of_type(RETURN_STATUSES))
    router.from_backend(REQUEST_STATUSES, MEPHISTO, {})
    parts = router.backend.of_type(RETURN_STATUSES)[before:]
    assert parts[-1].data == {}  # the answer's end
    return {k: v for part in parts for k, v in part.data.items()}


@pytest_twisted.ensureDeferred
async def test_each_router_answers_request_statuses_for_the_agents_it_serves(
    routers: list[Router],
) -> None:
    a, b = routers
    await in_task(a, b, "agent-1")  # registered on a, its socket on b
    await a.register("agent-2")  # registered on a, no socket yet
    await wait_for(lambda: b.hub.agents.get("agent-2") is not None, "b to know agent-2")
    assert answered(a) == {"agent-1": Status.IN_TASK, "agent-2": Status.NONE}
    assert answered(b) == {"agent-1": Status.IN_TASK}  # b knows agent-2, serves it not

    # agent-2's page opens on b, then moves to a: b answers for it no more.
    page = b.page("agent-2")
    await wait_for(lambda: page in b.hub.link_agents, "b to take agent-2's socket")
    assert set(answered(b)) == {"agent-1", "agent-2"}
    a.page("agent-2")
    await wait_for(lambda: page.closed, "b to let agent-2's socket go")
    assert set(answered(b)) == {"agent-1"}
