"""`architect results --timeline` from a real daemon's database: each agent's registration,
status changes, submissions, live traffic and its browser's silences, in time order."""

from __future__ import annotations

import io
import json

import pytest_twisted

from architect.cli import parser
from architect.protocol import ALIVE, CLIENT_BOUND_LIVE_UPDATE, MEPHISTO_BOUND_LIVE_UPDATE, Status
from architect.timeline import agent_events, silences, timeline
from tests.admin_support import register, submit
from tests.clients import Browser, wait_for
from tests.daemon import Daemons


@pytest_twisted.ensureDeferred
async def test_each_agents_story(daemons: Daemons) -> None:
    daemon = await daemons.embedded(
        router={"disconnect_grace": 0.2},
        task={"name": "ops", "module": "architect.demo.task"},
    )
    alice, bob = Browser(), Browser()
    a = (await register(alice, daemon.url, "alice"))["agent_id"]
    socket = await alice.open_socket(daemon.port)
    socket.send(ALIVE, a)
    socket.send(MEPHISTO_BOUND_LIVE_UPDATE, a, {"update_id": "u1", "text": "hi"})
    await wait_for(lambda: len(socket.of_type(CLIENT_BOUND_LIVE_UPDATE)) >= 2, "the bot")
    code, _ = await submit(alice, daemon.url, a, {"label": "positive"})
    assert code == 200
    b = (await register(bob, daemon.url, "bob", "a2"))["agent_id"]
    bobs = await bob.open_socket(daemon.port)
    bobs.send(ALIVE, b)
    await wait_for(lambda: b in daemon.hub.link_agents.values(), "bob's socket")
    await bobs.close()  # and never back: disconnect after the grace
    await wait_for(lambda: daemon.has_status(b, Status.DISCONNECT), "bob's disconnect")
    await daemon.settled()

    events = await agent_events(daemon.database, daemon.pool.task_run)
    alices = [e for e in events if e["agent_id"] == a]
    assert alices[0]["event"] == "registered"
    assert alices[0]["worker_name"] == "alice"
    assert [e["status"] for e in alices if e["event"] == "status"][-1] == Status.COMPLETED
    (submitted,) = [e for e in alices if e["event"] == "submission"]
    assert submitted["kind"] == "unit"
    (live,) = [e for e in alices if e["event"] == "live"]
    assert (live["from_browser"], live["to_browser"]) == (1, 2)
    times = [e["time"] for e in alices]
    assert times == sorted(times)
    bobs_statuses = [e["status"] for e in events if e["agent_id"] == b and e["event"] == "status"]
    assert bobs_statuses[-1] == Status.DISCONNECT
    assert not [e for e in events if e["event"] == "submission" and e["agent_id"] == b]

    out = io.StringIO()
    await timeline(daemon.database, daemon.pool.task_run, out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == events


def test_silences_are_the_gaps_of_at_least_the_threshold() -> None:
    assert silences([]) == [] and silences([5.0]) == []
    assert silences([0.0, 10.0, 70.0, 71.0, 200.5]) == [(10.0, 60.0), (71.0, 129.5)]
    assert silences([0.0, 59.9]) == []
    assert silences([0.0, 3.0], at_least=2) == [(0.0, 3.0)]


def test_the_option() -> None:
    assert parser().parse_args(["results", "--timeline"]).timeline
    assert not parser().parse_args(["results"]).timeline
