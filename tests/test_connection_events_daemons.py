"""Connection events between two daemons, a separate router (mode off) and our remote
backend, over real loopback sockets: the events extension is agreed in the handshake, the
router's events reach the backend's database through the link, and the backend notes
`router_lost` when its router goes away. A backend that takes no extension (Mephisto's)
gets no event packet."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest_twisted
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import deferLater

from architect.connection_events import ConnectionEventKind as Kind
from architect.protocol import ALIVE, CONNECTION_EVENTS, MEPHISTO
from architect.router.event_buffer import SEND_EVERY
from architect.router.websocket import RouterSocket
from tests.clients import open_socket, wait_for
from tests.daemon import Daemons, reactor
from tests.test_journal_integration import (
    TOKEN,
    backend_config,
    browsers,
    register,
    router_config,
)


@pytest_twisted.ensureDeferred
async def test_the_routers_events_reach_the_backend_and_it_notes_losing_the_router(
    tmp_path: Path, daemons: Daemons
) -> None:
    router = await daemons.start(router_config(tmp_path / "router"))
    backend = await daemons.start(backend_config(tmp_path / "backend", router))
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    assert router.hub.backend_takes_events  # offered in the handshake, taken up in its alive
    workers = browsers()
    agent_id = await register(workers, router, "w1")
    for close_code in (4321, None):  # the page closes, comes back, closes with no code
        page = await workers.of_agent(agent_id).open_socket(router.port)
        page.send(ALIVE, agent_id)
        await wait_for(lambda: agent_id in router.hub.link_agents.values(), "the page's socket")
        page.sendClose(code=close_code)
        await wait_for(lambda: agent_id not in router.hub.link_agents.values(), "the close")
    await wait_for(lambda: backend.has_event(agent_id, Kind.RELOAD), "the reload, stored")

    link = router.hub.backend
    await daemons.stop(router)
    assert isinstance(link, RouterSocket)
    cast(ITCPTransport, link.transport).abortConnection()  # as the process's end would
    await wait_for(lambda: backend.has_event(agent_id, Kind.ROUTER_LOST), "router_lost, stored")
    events, _ = await backend.database.connection_events(backend.task_run_id)
    assert [(e.event, e.code) for e in events] == [
        (Kind.SOCKET_OPEN, None),
        (Kind.SOCKET_CLOSE, 4321),
        (Kind.RELOAD, None),
        (Kind.SOCKET_CLOSE, 1005),  # closed cleanly, without a code (RFC 6455)
        (Kind.ROUTER_LOST, None),
    ]


@pytest_twisted.ensureDeferred
async def test_a_backend_that_takes_no_extension_gets_no_event_packet(
    tmp_path: Path, daemons: Daemons
) -> None:
    router = await daemons.start(router_config(tmp_path / "router"))
    mephisto = await open_socket(router.port, f"?token={TOKEN}")
    mephisto.send(ALIVE, MEPHISTO)  # as Mephisto's backend says it: data {}
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    assert not router.hub.backend_takes_events
    router.hub.agents.ensure("agent-1")  # as if the backend had named it
    for _ in range(3):
        page = await open_socket(router.port)
        page.send(ALIVE, "agent-1")
        await wait_for(lambda: "agent-1" in router.hub.link_agents.values(), "the socket")
        await page.close()
    await deferLater(reactor, 3 * SEND_EVERY, lambda: None)  # the batches would be out by now
    assert mephisto.of_type(CONNECTION_EVENTS) == []
    assert not router.hub.events


@pytest_twisted.ensureDeferred
async def test_a_stopping_router_sends_its_last_events_with_its_sockets_closes(
    tmp_path: Path, daemons: Daemons
) -> None:
    router = await daemons.start(router_config(tmp_path / "router"))
    backend = await daemons.start(backend_config(tmp_path / "backend", router))
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    workers = browsers()
    agent_id = await register(workers, router, "w1")
    page = await workers.of_agent(agent_id).open_socket(router.port)
    page.send(ALIVE, agent_id)
    await wait_for(lambda: agent_id in router.hub.link_agents.values(), "the page's socket")
    await daemons.stop(router)  # drains: closes the page with 1012, sends what waits
    await wait_for(lambda: backend.has_event(agent_id, Kind.SOCKET_CLOSE), "the close, stored")
    events, _ = await backend.database.connection_events(backend.task_run_id)
    assert [(e.event, e.code) for e in events if e.event != Kind.ROUTER_LOST] == [
        (Kind.SOCKET_OPEN, None),
        (Kind.SOCKET_CLOSE, 1012),
    ]
