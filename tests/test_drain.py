"""The graceful stop (what SIGTERM does: twistd stops the daemon's services) with real
daemons: new registrations get 503 with Retry-After, the registration under way is
answered, submissions are still kept, agents' sockets are closed with 1012, and all of
it within [router] drain_timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import ensureDeferred
from twisted.web.http_headers import Headers

from architect.config import BackendConfig, Config, RouterConfig
from architect.protocol import AGENT_DETAILS, ALIVE, MEPHISTO, REGISTER_AGENT, CloseCode
from tests.admin_support import register, submit
from tests.clients import Browser, PacketClient, open_socket, wait_for
from tests.daemon import ANY_LOOPBACK_PORT, Daemon, Daemons
from tests.engines import on_every_engine

TOKEN = "drain-test-token"


def router_alone(folder: Path, drain_timeout: float) -> Config:
    return Config(
        path=folder / "router.ini",
        router=RouterConfig(
            listen=ANY_LOOPBACK_PORT,
            backend_token=TOKEN,
            upload_dir=folder / "uploads",
            journal_dir=folder / "journal",
            drain_timeout=drain_timeout,
        ),
        backend=BackendConfig(mode="off"),
    )


async def backend_of(router: Daemon) -> PacketClient:
    """A backend played by the test: it answers registrations when told to."""
    backend = await open_socket(router.port, f"?token={TOKEN}")
    backend.send(ALIVE, MEPHISTO)
    await wait_for(lambda: router.hub.backend is not None, "the backend link")
    return backend


def answer(backend: PacketClient, request_id: str, agent_id: str) -> None:
    backend.send(AGENT_DETAILS, request_id, {"request_id": request_id, "agent_id": agent_id})


async def registered(router: Daemon, backend: PacketClient, browser: Browser, agent: str) -> None:
    asked = ensureDeferred(register(browser, router.url, agent))
    request = await backend.next(REGISTER_AGENT)
    answer(backend, request.data["request_id"], agent)
    assert (await asked)["agent_id"] == agent


@pytest_twisted.ensureDeferred
async def test_a_stopping_router_answers_what_is_under_way_then_closes_sockets(
    daemons: Daemons,
) -> None:
    router = await daemons.start(router_alone(daemons.next_folder(), drain_timeout=5.0))
    backend = await backend_of(router)
    alice = Browser()
    await registered(router, backend, alice, "agent-a")
    socket = await alice.open_socket(router.port)
    socket.send(ALIVE, "agent-a")
    await wait_for(lambda: "agent-a" in router.hub.link_agents.values(), "alice's socket")
    # Bob's registration is under way when the stop begins.
    bob = Browser()
    bobs = ensureDeferred(register(bob, router.url, "bob"))
    bobs_request = await backend.next(REGISTER_AGENT)

    stopping = ensureDeferred(daemons.stop(router))
    await wait_for(lambda: router.hub.draining, "the drain")
    # A new registration is turned away, to come back to the next process.
    response = await Browser().http.post(
        f"{router.url}/request_agent",
        data=b'{"provider_data": {"worker_name": "carol"}}',
        headers=Headers({"Content-Type": ["application/json"]}),
    )
    assert response.code == 503
    assert response.headers.getRawHeaders("retry-after") == ["5"]
    # A submission is still kept (journaled) ...
    code, kept = await submit(alice, router.url, "agent-a", {"label": "x"})
    assert code == 200, kept
    assert not stopping.called and not socket.has_closed
    # ... and Bob gets his answer once the backend gives it.
    answer(backend, bobs_request.data["request_id"], "agent-b")
    assert (await bobs)["agent_id"] == "agent-b"
    assert await socket.closed == CloseCode.SERVICE_RESTART
    await stopping


@pytest_twisted.ensureDeferred
async def test_the_drain_is_bounded_by_drain_timeout(daemons: Daemons) -> None:
    router = await daemons.start(router_alone(daemons.next_folder(), drain_timeout=0.5))
    backend = await backend_of(router)
    never = ensureDeferred(register(Browser(), router.url, "dave"))
    never.addErrback(lambda _: None)  # answered 503 when the router stops
    await backend.next(REGISTER_AGENT)
    started = time.monotonic()
    await daemons.stop(router)
    assert 0.4 <= time.monotonic() - started < 3


@pytest_twisted.ensureDeferred
async def test_without_a_backend_nothing_is_waited_for(daemons: Daemons) -> None:
    router = await daemons.start(router_alone(daemons.next_folder(), drain_timeout=30.0))
    started = time.monotonic()
    await daemons.stop(router)
    assert time.monotonic() - started < 2


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_an_embedded_daemon_closes_its_agents_sockets_with_1012(daemons: Daemons) -> None:
    daemon = await daemons.embedded(router={"drain_timeout": 5.0})
    erin = Browser()
    agent_id = (await register(erin, daemon.url, "erin"))["agent_id"]
    socket = await erin.open_socket(daemon.port)
    socket.send(ALIVE, agent_id)
    await wait_for(lambda: agent_id in daemon.hub.link_agents.values(), "erin's socket")
    await daemons.stop(daemon)
    assert await socket.closed == CloseCode.SERVICE_RESTART


@pytest.mark.parametrize("seconds", ["0", "2.5"])
def test_drain_timeout_is_a_key(tmp_path: Path, seconds: str) -> None:
    from architect.config import load_config

    ini = tmp_path / "router.ini"
    ini.write_text(f"[router]\ndrain_timeout = {seconds}\n")
    assert load_config(ini).router.drain_timeout == float(seconds)
