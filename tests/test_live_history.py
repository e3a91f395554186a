"""The backend's bounds on an agent's live updates: how many (and how many bytes) it keeps
and passes to the task, and how much of them a reloading page gets back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import StorageConfig, TaskConfig
from architect.protocol import MEPHISTO_BOUND_LIVE_UPDATE, Packet, Status, data_size
from architect.storage import Database, Direction, open_database
from architect.tasks.agent import Agent
from architect.tasks.definition import TaskDefinition
from architect.tasks.history import LiveLimits
from architect.tasks.hooks import inline_runner
from tests.test_client_io import Backend


def sized(n: int, size: int = 1000) -> dict[str, Any]:
    """An update numbered `n` whose JSON is `size` bytes long."""
    data: dict[str, Any] = {"update_id": f"u{n}", "n": n, "pad": ""}
    data["pad"] = "x" * (size - data_size(data))
    assert data_size(data) == size
    return data


def make_agent(limits: LiveLimits) -> tuple[Agent, list[Packet], list[dict[str, Any]]]:
    """An agent in task; the packets it sends and the live updates its listeners hear of."""
    agent = Agent(Clock(), "a1", "w1", {}, live_limits=limits)
    sent: list[Packet] = []
    heard: list[dict[str, Any]] = []
    agent.set_outlet(sent.append)
    agent.add_live_update_listener(lambda agent, kind, data: heard.append(data))
    agent.set_status(Status.IN_TASK)
    return agent, sent, heard


def warnings(events: Sequence[dict[str, Any]], words: str) -> list[str]:
    texts = [formatEvent(e) for e in events if e.get("log_level") >= LogLevel.warn]
    return [t for t in texts if words in t]


# --- the agent ---


def test_updates_past_the_count_are_neither_recorded_nor_given_to_the_task() -> None:
    agent, _, heard = make_agent(LiveLimits(max_updates=3))
    with capturedLogs() as events:
        taken = [agent.receive_live_update(sized(n)) for n in range(6)]
    assert taken == [True, True, True, False, False, False]
    assert [u["n"] for u in heard] == [0, 1, 2]  # the recorder is a listener
    assert [u["n"] for u in agent.past_live_updates] == [0, 1, 2]
    acted: list[dict[str, Any] | None] = []
    for _ in range(4):  # the task's act() gets the kept ones, and no more
        agent.act().addCallback(acted.append)
    assert [u["n"] for u in acted if u is not None] == [0, 1, 2] and len(acted) == 3
    assert len(warnings(events, "a1")) == 1


def test_updates_past_the_bytes_are_neither_recorded_nor_given_to_the_task() -> None:
    agent, _, heard = make_agent(LiveLimits(max_bytes=2500))
    given: list[dict[str, Any]] = []
    agent.on_live_update = lambda agent, data: given.append(data)
    with capturedLogs() as events:
        for n in range(5):
            agent.receive_live_update(sized(n))
    assert [u["n"] for u in given] == [0, 1]  # a third would make 3000 bytes
    assert [u["n"] for u in heard] == [0, 1]
    assert len(warnings(events, "a1")) == 1


def test_the_tasks_own_updates_count_and_are_always_sent() -> None:
    agent, sent, _ = make_agent(LiveLimits(max_updates=2))
    for n in range(3):
        agent.observe({"n": n})
    assert [p.data["n"] for p in sent if "n" in p.data] == [0, 1, 2]
    assert not agent.receive_live_update(sized(9))


def test_a_reload_gets_the_newest_updates_within_count_and_bytes() -> None:
    agent, _, _ = make_agent(LiveLimits(max_past=4, max_past_bytes=3500))
    for n in range(10):
        agent.receive_live_update(sized(n))
    assert [u["n"] for u in agent.reconnect_task_data()["past_live_updates"]] == [7, 8, 9]
    agent, _, _ = make_agent(LiveLimits(max_past=2, max_past_bytes=3500))
    for n in range(10):
        agent.receive_live_update(sized(n))
    assert [u["n"] for u in agent.reconnect_task_data()["past_live_updates"]] == [8, 9]
    assert len(agent.past_live_updates) == 10  # the task still has them all


# --- the handler and the stored pool ---


def test_the_handler_drops_updates_of_a_full_agent_and_answers_a_reload_in_bounds() -> None:
    b = Backend(live_limits=LiveLimits(max_updates=5, max_past=3))
    agent_id = b.register("r1", registration_id="a1-w1")["agent_id"]
    for n in range(8):
        b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, sized(n))
    assert [u["n"] for u in b.agent(agent_id).past_live_updates] == [0, 1, 2, 3, 4]
    again = b.register("r2", registration_id="a1-w1")
    assert [u["n"] for u in again["init_task_data"]["past_live_updates"]] == [2, 3, 4]


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=Clock())
    yield database
    await database.close()


@pytest_twisted.ensureDeferred
async def test_a_stored_pool_keeps_no_update_past_the_bounds(db: Database) -> None:
    config = TaskConfig(name="run-1", units=({"n": 0},))
    run = await prepare_task_run(db, config, [{"n": 0}])
    limits = LiveLimits(max_updates=4, max_past=2)
    pool = StoredWorkerPool(
        Clock(), db, run, config, TaskDefinition(), inline_runner, live_limits=limits
    )
    provider = {"worker_name": "w1", "provider_type": "mock", "agent_registration_id": "a1"}
    agent = (await pool.register(provider)).agent
    assert agent is not None
    for n in range(10):
        agent.receive_live_update(sized(n))
    await pool.settled()
    stored = await db.live_updates(agent.agent_id, Direction.MEPHISTO_BOUND)
    assert [u.data["n"] for u in stored] == [0, 1, 2, 3]
    again = await pool.register(provider)
    assert again.init_task_data is not None
    assert [u["n"] for u in again.init_task_data["past_live_updates"]] == [2, 3]
