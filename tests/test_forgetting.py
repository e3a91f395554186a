"""Finished agents are forgotten: the backend's memory holds the agents at work, and the
database answers for the others (a reload, a late packet, a router that is behind).

Through the real backend (tests/backend_stack.py): a real database (each engine), the
stored pool, the task runner and the ClientIOHandler, with a fake router channel and a
task.Clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from architect.backend.resume import Resumption
from architect.config import StorageConfig
from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, FailureReason, Status
from architect.storage import Database, SubmissionKind, open_database
from architect.tasks.agent import Agent, AgentGone
from architect.tasks.definition import LIVE, TaskDefinition, WorkerInfo
from architect.tasks.live import Assignment
from tests.backend_stack import BackendStack

# How many workers the long runs below register and finish.
WORKERS = 200


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=Clock())
    yield database
    await database.close()


def units(count: int) -> list[dict[str, Any]]:
    return [{"n": n} for n in range(count)]


def judged(agent: Agent, data: dict[str, Any]) -> bool:
    return bool(data.get("ok", True))


def working(count: int) -> dict[str, int]:
    return {
        "registry.agents": count,
        "registry.registrations": count,
        "routes.channels": count,
        "runner.units": count,
        "expiry.timers": count,
    }


def nothing_in_flight(stack: BackendStack) -> None:
    sizes = stack.sizes()
    for name in ("handler.submitting", "resumption.unclaimed", "pool.locks", "recorder.writes"):
        assert sizes[name] == 0, (name, sizes)


def quiet_about(events: Sequence[dict[str, Any]], agent_id: str) -> list[dict[str, Any]]:
    """The events about `agent_id`; fails if one is a warning, an error or a traceback."""
    about = [e for e in events if agent_id in str(e.get("agent_id", e.get("subject", "")))]
    for event in about:
        assert event.get("log_failure") is None, event
        assert event["log_level"] in (LogLevel.debug, LogLevel.info), event
    return about


# --- a long run: memory follows the agents at work ---


@pytest_twisted.ensureDeferred
async def test_finished_agents_leave_every_structure_of_a_static_task(
    db: Database,
) -> None:
    stack = await BackendStack.make(db, units(WORKERS), TaskDefinition(validate_submission=judged))
    agents = []
    for n in range(WORKERS):
        details = await stack.register(f"w{n}", f"reg-{n}")
        assert details["agent_id"] is not None, details
        agents.append(details["agent_id"])
    assert stack.per_agent_sizes() == working(WORKERS)
    # Workers who find nothing to do leave nothing behind either.
    for n in range(20):
        refused = await stack.register(f"late{n}")
        assert refused["failure_reason"] == FailureReason.NO_WORK
    still_working = agents[-3:]
    disconnected = agents[: WORKERS - 3 : 10]
    await stack.router_statuses({agent_id: Status.DISCONNECT for agent_id in disconnected})
    for n, agent_id in enumerate(agents[: WORKERS - 3]):
        if agent_id not in disconnected:
            await stack.submit(agent_id, {"answer": n, "ok": n % 10 != 1})
    await stack.settled()
    assert stack.per_agent_sizes() == working(3)
    nothing_in_flight(stack)
    assert {a.agent_id for a in stack.pool.registry.agents.values()} == set(still_working)

    for agent_id in still_working:
        await stack.submit(agent_id, {"answer": "last"})
    assert stack.per_agent_sizes() == working(0)
    nothing_in_flight(stack)
    statuses = await db.count_agents_by_status(stack.pool.task_run.id)
    assert statuses == {
        Status.COMPLETED: WORKERS - len(disconnected) - 20,
        Status.SOFT_REJECTED: 20,
        Status.DISCONNECT: len(disconnected),
    }


@pytest_twisted.ensureDeferred
async def test_onboarding_agents_are_forgotten_once_their_onboarding_is_decided(
    db: Database,
) -> None:
    def onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
        return {"question": "2+2?"}

    def validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
        return data.get("answer") == "4"

    task = TaskDefinition(onboarding_data=onboarding_data, validate_onboarding=validate_onboarding)
    stack = await BackendStack.make(db, units(WORKERS), task, onboarding=True)
    count = WORKERS // 2
    for n in range(count):
        onboarding = await stack.register(f"w{n}", f"reg-{n}")
        assert onboarding["agent_id"].startswith("onboarding-")
        verdict = await stack.onboard(onboarding["agent_id"], "4" if n % 2 else "5")
        if n % 2:
            await stack.submit(verdict["agent_id"], {"answer": n})
        else:
            assert verdict["failure_reason"] == FailureReason.NOT_QUALIFIED
    assert stack.per_agent_sizes() == working(0)
    nothing_in_flight(stack)


async def chat(assignment: Assignment, agents: list[Agent]) -> None:
    """A live room: greets both agents, then listens to the first until it leaves."""
    for agent in agents:
        agent.observe({"text": "hello"})
    try:
        while True:
            await agents[0].act()
    except AgentGone:
        pass


@pytest_twisted.ensureDeferred
async def test_a_live_room_ends_with_its_last_agent(db: Database) -> None:
    task = TaskDefinition(kind=LIVE, run_assignment=chat)
    rooms = WORKERS // 2
    stack = await BackendStack.make(db, units(rooms), task, units_per_assignment=2)
    agents = [(await stack.register(f"w{n}", f"reg-{n}"))["agent_id"] for n in range(WORKERS)]
    live = stack.runner.live
    assert live is not None
    assert len(live.assignments) == rooms
    assert [stack.held(a).status for a in agents[:2]] == [Status.IN_TASK] * 2
    firsts, seconds = agents[0::2], agents[1::2]
    for agent_id in firsts:
        await stack.submit(agent_id, {"said": "bye"})
    # Each room is still there for the agent that works on.
    assert len(live.assignments) == rooms
    assert stack.per_agent_sizes() == working(rooms)
    assert stack.sizes()["live.agents"] == WORKERS
    for agent_id in seconds:
        await stack.submit(agent_id, {"said": "bye"})
    assert stack.sizes()["live.assignments"] == stack.sizes()["live.agents"] == 0
    assert stack.per_agent_sizes() == working(0)
    nothing_in_flight(stack)


@pytest_twisted.ensureDeferred
async def test_a_partner_disconnect_ends_the_room_and_frees_both_agents(
    db: Database,
) -> None:
    task = TaskDefinition(kind=LIVE, run_assignment=chat)
    stack = await BackendStack.make(db, units(1), task, units_per_assignment=2)
    alice, bob = [(await stack.register(w))["agent_id"] for w in ("alice", "bob")]
    await stack.router_statuses({alice: Status.DISCONNECT, bob: Status.IN_TASK})
    assert stack.statuses_sent(bob)[-1] == Status.PARTNER_DISCONNECT
    assert stack.sizes()["live.assignments"] == 0
    assert stack.per_agent_sizes() == working(0)


@pytest_twisted.ensureDeferred
async def test_a_restarted_backend_holds_only_the_agents_it_takes_back(
    storage_config: StorageConfig,
) -> None:
    db = await open_database(storage_config, clock=Clock())
    stack = await BackendStack.make(db, units(10))
    agents = [(await stack.register(f"w{n}", f"reg-{n}"))["agent_id"] for n in range(10)]
    for agent_id in agents[:7]:
        await stack.submit(agent_id, {"done": True})
    await db.close()

    db = await open_database(storage_config, clock=Clock())
    try:
        stack = await BackendStack.make(db, units(10))
        resumption = Resumption(stack.clock, window=60.0, static_task=True)
        stack.handler.resumption = resumption
        await resumption.start(db, stack.pool.task_run.id, stack.pool.registry, stack.runner)
        assert set(stack.pool.registry.agents) == set(agents[7:])
        # A finished agent's page reloads: the database answers.
        again = await stack.register("w0", "reg-0")
        assert again["failure_reason"] == FailureReason.TASK_MISSING
        # The ones taken back work on and are forgotten in turn.
        for agent_id in agents[7:]:
            await stack.submit(agent_id, {"done": True})
        assert stack.per_agent_sizes() == working(0)
        nothing_in_flight(stack)
    finally:
        await db.close()


# --- a worker who comes back after the agent finished ---


async def finish(stack: BackendStack, agent_id: str, how: str) -> None:
    if how == "submitted":
        await stack.submit(agent_id, {"done": True})
    elif how == "router disconnect":
        await stack.router_statuses({agent_id: Status.DISCONNECT})
    else:
        stack.held(agent_id).set_status(how)
        await stack.settled()


@pytest.mark.parametrize("how", ["submitted", "router disconnect", Status.EXPIRED])
@pytest_twisted.ensureDeferred
async def test_a_reload_after_the_agent_finished_is_task_missing(db: Database, how: str) -> None:
    stack = await BackendStack.make(db, units(3))
    agent_id = (await stack.register("w1", "reg-1"))["agent_id"]
    await finish(stack, agent_id, how)
    assert stack.pool.get_agent(agent_id) is None
    again = await stack.register("w1", "reg-1")
    assert (again["agent_id"], again["failure_reason"]) == (None, FailureReason.TASK_MISSING)
    intruder = await stack.register("mallory", "reg-1")
    assert intruder["failure_reason"] == FailureReason.TASK_MISSING
    # A new page is a new registration.
    assert (await stack.register("w1", "reg-2"))["agent_id"] is not None
    assert stack.per_agent_sizes() == working(1)


@pytest_twisted.ensureDeferred
async def test_a_reload_after_onboarding_was_decided(db: Database) -> None:
    def validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
        if data["answer"] == "crash":
            raise RuntimeError("a bug in the task")
        return data["answer"] == "4"

    task = TaskDefinition(validate_onboarding=validate_onboarding)
    stack = await BackendStack.make(db, units(4), task, onboarding=True)
    # Passed: the registration id now names the unit agent.
    passed = await stack.onboard((await stack.register("w1", "reg-1"))["agent_id"], "4")
    again = await stack.register("w1", "reg-1")
    assert again["agent_id"] == passed["agent_id"]
    await stack.submit(passed["agent_id"], {"done": True})
    assert (await stack.register("w1", "reg-1"))["failure_reason"] == FailureReason.TASK_MISSING
    # Failed: the stages decide afresh, and say not qualified.
    await stack.onboard((await stack.register("w2", "reg-2"))["agent_id"], "5")
    assert (await stack.register("w2", "reg-2"))["failure_reason"] == FailureReason.NOT_QUALIFIED
    # Not decided (the check failed): onboarding again.
    with capturedLogs():
        crashed = await stack.onboard((await stack.register("w3", "reg-3"))["agent_id"], "crash")
    assert crashed["failure_reason"] == FailureReason.NO_WORK
    assert (await stack.register("w3", "reg-3"))["agent_id"].startswith("onboarding-")
    assert stack.per_agent_sizes() == {**working(1), "runner.units": 0}  # onboarding: no unit


@pytest_twisted.ensureDeferred
async def test_the_limits_count_forgotten_agents(db: Database) -> None:
    stack = await BackendStack.make(db, units(6), allowed_concurrent=1, maximum_units_per_worker=2)
    first = (await stack.register("w1", "reg-1"))["agent_id"]
    assert (await stack.register("w1", "reg-2"))["failure_reason"] == (
        FailureReason.TOO_MANY_CONCURRENT
    )
    await stack.submit(first, {"done": True})
    second = (await stack.register("w1", "reg-3"))["agent_id"]
    assert second is not None
    await stack.submit(second, {"done": True})
    assert (await stack.register("w1", "reg-4"))["failure_reason"] == FailureReason.MAX_UNITS
    # A unit left unfinished does not count.
    third = (await stack.register("w2", "reg-5"))["agent_id"]
    await stack.router_statuses({third: Status.DISCONNECT})
    assert (await stack.register("w2", "reg-6"))["agent_id"] is not None
    assert stack.per_agent_sizes() == working(1)


# --- late packets about a forgotten agent ---


@pytest_twisted.ensureDeferred
async def test_a_late_live_update_is_dropped_quietly(db: Database) -> None:
    stack = await BackendStack.make(db, units(2))
    agent_id = (await stack.register("w1"))["agent_id"]
    await stack.submit(agent_id, {"done": True})
    stack.channel.clear()
    with capturedLogs() as events:
        await stack.live_update(agent_id, {"update_id": "late", "text": "still here?"})
    assert quiet_about(events, agent_id)
    assert stack.channel.sent == []
    assert await db.live_updates(agent_id) == []
    assert stack.per_agent_sizes() == working(0)


@pytest_twisted.ensureDeferred
async def test_a_live_update_for_an_agent_nobody_knows_is_still_a_warning(
    db: Database,
) -> None:
    stack = await BackendStack.make(db, units(1))
    with capturedLogs() as events:
        await stack.live_update("ghost", {"update_id": "u1"})
    assert [e["log_level"] for e in events if e.get("agent_id") == "ghost"] == [LogLevel.warn]


@pytest_twisted.ensureDeferred
async def test_a_second_submission_after_finishing_is_dropped(db: Database) -> None:
    stack = await BackendStack.make(db, units(2))
    agent_id = (await stack.register("w1"))["agent_id"]
    await stack.submit(agent_id, {"answer": 1})
    with capturedLogs() as events:
        await stack.submit(agent_id, {"answer": 2})  # a double click: another timestamp
    assert quiet_about(events, agent_id)
    stored = await db.list_submissions(agent_id=agent_id)
    assert [s.data for s in stored] == [{"answer": 1}]
    assert stack.statuses_sent(agent_id) == [Status.IN_TASK, Status.COMPLETED]


@pytest_twisted.ensureDeferred
async def test_a_submission_after_a_disconnect_is_kept(db: Database) -> None:
    stack = await BackendStack.make(db, units(2))
    agent_id = (await stack.register("w1"))["agent_id"]
    await stack.router_statuses({agent_id: Status.DISCONNECT})
    with capturedLogs() as events:
        await stack.submit(agent_id, {"answer": 1})
        await stack.submit(agent_id, {"answer": 2})
    assert quiet_about(events, agent_id)
    stored = await db.list_submissions(agent_id=agent_id, kind=SubmissionKind.UNIT)
    assert [s.data for s in stored] == [{"answer": 1}]
    agent = await db.get_agent(agent_id)
    assert agent is not None and agent.status == Status.DISCONNECT
    assert stack.per_agent_sizes() == working(0)
    nothing_in_flight(stack)


@pytest_twisted.ensureDeferred
async def test_a_late_onboarding_submission_is_task_missing(db: Database) -> None:
    stack = await BackendStack.make(db, units(2), onboarding=True)
    onboarding = (await stack.register("w1", "reg-1"))["agent_id"]
    assert (await stack.onboard(onboarding, "4"))["agent_id"] is not None
    with capturedLogs() as events:
        late = await stack.onboard(onboarding, "4 again")
    assert quiet_about(events, onboarding)
    assert (late["agent_id"], late["failure_reason"]) == (None, FailureReason.TASK_MISSING)
    kept = await db.list_submissions(agent_id=onboarding, kind=SubmissionKind.ONBOARDING)
    assert [s.data for s in kept] == [{"answer": "4"}, {"answer": "4 again"}]  # as before
    assert stack.per_agent_sizes() == working(1)


@pytest_twisted.ensureDeferred
async def test_a_router_behind_is_told_the_stored_final_status(db: Database) -> None:
    stack = await BackendStack.make(db, units(3))
    done = (await stack.register("w1"))["agent_id"]
    gone = (await stack.register("w2"))["agent_id"]
    await stack.submit(done, {"done": True})
    await stack.router_statuses({gone: Status.DISCONNECT})
    stack.channel.clear()
    # The router's statuses were read before our last pushes reached it.
    with capturedLogs() as events:
        await stack.router_statuses(
            {done: Status.IN_TASK, gone: Status.IN_TASK, "stranger": Status.WAITING}
        )
    assert quiet_about(events, done)
    assert [(p.subject_id, p.data["status"]) for p in stack.channel.sent] == [
        (done, Status.COMPLETED),
        (gone, Status.DISCONNECT),
        ("stranger", Status.DISCONNECT),
    ]
    assert stack.per_agent_sizes() == working(0)


@pytest_twisted.ensureDeferred
async def test_a_verdict_after_the_agent_is_forgotten_reaches_the_router(
    db: Database,
) -> None:
    stack = await BackendStack.make(db, units(2), TaskDefinition(validate_submission=judged))
    agent_id = (await stack.register("w1"))["agent_id"]
    with capturedLogs() as events:
        await stack.submit(agent_id, {"ok": False})
    assert quiet_about(events, agent_id)
    assert stack.statuses_sent(agent_id) == [Status.IN_TASK, Status.COMPLETED, Status.SOFT_REJECTED]
    stored = await db.get_agent(agent_id)
    assert stored is not None and stored.status == Status.SOFT_REJECTED
    assert stack.per_agent_sizes() == working(0)


@pytest_twisted.ensureDeferred
async def test_a_failing_verdict_is_logged_with_the_unit(db: Database) -> None:
    def broken(agent: Agent, data: dict[str, Any]) -> bool:
        raise RuntimeError("a bug in the task")

    stack = await BackendStack.make(db, units(2), TaskDefinition(validate_submission=broken))
    agent_id = (await stack.register("w1"))["agent_id"]
    stored = await db.get_agent(agent_id)
    assert stored is not None
    with capturedLogs() as events:
        await stack.submit(agent_id, {"done": True})
    [failure] = [e for e in events if e.get("log_failure") is not None]
    assert failure["unit"] == stored.unit_id
    assert stack.per_agent_sizes() == working(0)


@pytest_twisted.ensureDeferred
async def test_task_code_may_still_talk_to_a_forgotten_agent(db: Database) -> None:
    """A live room goes on after one agent submitted; what the task code sends that agent
    still leaves for its router."""
    rooms: list[list[Agent]] = []

    async def run_assignment(assignment: Assignment, agents: list[Agent]) -> None:
        rooms.append(agents)

    task = TaskDefinition(kind=LIVE, run_assignment=run_assignment)
    stack = await BackendStack.make(db, units(1), task, units_per_assignment=2)
    alice, bob = [(await stack.register(w, f"reg-{w}"))["agent_id"] for w in ("alice", "bob")]
    await stack.submit(alice, {"done": True})
    assert stack.pool.get_agent(alice) is None
    stack.channel.clear()
    [[first, _]] = rooms
    with capturedLogs() as events:
        first.observe({"text": "thanks!"})
    assert quiet_about(events, alice) == []
    assert [(p.packet_type, p.subject_id) for p in stack.channel.sent] == [
        (CLIENT_BOUND_LIVE_UPDATE, alice)
    ]
    assert stack.per_agent_sizes() == working(1)
    await stack.submit(bob, {"done": True})
    assert stack.sizes()["live.assignments"] == 0
