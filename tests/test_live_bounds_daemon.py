"""Black box: a worker who sends many large live updates to a real daemon (embedded, SQLite,
real sockets) finds the backend keeping only its bounded share, and a reload of the page
answered with a bounded history, not everything ever said."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted

from architect.config import BackendConfig
from architect.protocol import ALIVE, HEARTBEAT, MEPHISTO_BOUND_LIVE_UPDATE
from architect.storage import Direction
from tests.clients import Browser, wait_for
from tests.daemon import Daemon, Daemons

# Each embedded daemon here runs once on SQLite, once on PostgreSQL (conftest).
DAEMONS_ON_EVERY_ENGINE = True

UPDATES = 40  # within the router's default burst: the rate limit is not what is tried here
UPDATE_BYTES = 100_000
KEPT = 25  # [backend] max_live_updates_per_agent, for this test

PAGE = {
    "worker_name": "alice",
    "agent_registration_id": "1-alice",
    "assignment_id": "1",
    "provider_type": "mock",
}


async def request_agent(daemon: Daemon, browser: Browser) -> tuple[dict[str, Any], int]:
    """The registration answer's data, and the answer's size in bytes."""
    code, answer = await browser.post_json(f"{daemon.url}/request_agent", {"provider_data": PAGE})
    assert code == 200, answer
    return answer["data"], len(json.dumps(answer))


@pytest_twisted.ensureDeferred
async def test_a_reload_after_many_large_updates_stays_bounded(daemons: Daemons) -> None:
    daemon = await daemons.embedded(backend={"max_live_updates_per_agent": KEPT})
    browser = Browser()
    details, _ = await request_agent(daemon, browser)
    agent_id = details["agent_id"]
    socket = await browser.open_socket(daemon.port)
    try:
        socket.send(ALIVE, agent_id)
        for n in range(UPDATES):
            socket.send(
                MEPHISTO_BOUND_LIVE_UPDATE,
                agent_id,
                {"update_id": f"u{n}", "n": n, "blob": "x" * UPDATE_BYTES},
            )
        await wait_for(lambda: len(daemon.agent(agent_id).past_live_updates) == KEPT, "kept")
        socket.send(HEARTBEAT, agent_id)  # answered after the updates before it were handled
        await wait_for(lambda: socket.of_type(HEARTBEAT), "a heartbeat reply")
        assert not socket.has_closed  # dropping is not closing
    finally:
        await socket.close()
    assert len(daemon.agent(agent_id).past_live_updates) == KEPT
    await daemon.settled()
    stored = await daemon.database.live_updates(agent_id, Direction.MEPHISTO_BOUND)
    assert [u.data["n"] for u in stored] == list(range(KEPT))

    again, size = await request_agent(daemon, browser)  # the page reloads
    assert again["agent_id"] == agent_id
    past = again["init_task_data"]["past_live_updates"]
    budget = BackendConfig().max_past_live_update_bytes
    assert past and [u["n"] for u in past] == list(range(KEPT - len(past), KEPT))  # the newest
    assert len(json.dumps(past)) <= budget
    assert size < budget + 10_000
