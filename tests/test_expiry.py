"""Reservations expire: an agent that has not submitted within `[task] assignment_duration`
of its creation becomes `expired`, and its unit goes back to the pool.

Through the real backend (tests/backend_stack.py) on a task.Clock that the database's
times follow too, and one black-box test against a real embedded daemon.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from architect.backend.expiry import AgentExpiry
from architect.backend.resume import Resumption
from architect.config import Config, ConfigError, StorageConfig, TaskConfig, load_config
from architect.protocol import ALIVE, FailureReason, Status
from architect.storage import (
    Database,
    SubmissionKind,
    UnitStatus,
    open_database,
)
from architect.tap import build_service
from architect.tasks.agent import Agent
from architect.tasks.definition import LIVE, TaskDefinition, WorkerInfo
from architect.tasks.live import Assignment
from tests.backend_stack import BackendStack
from tests.clients import Browsers, reactor, wait_for
from tests.daemon import Daemons, daemon_config, relocated
from tests.engines import on_every_engine

WINDOW = 1800.0  # the default assignment_duration
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig, clock: Clock) -> AsyncIterator[Database]:
    database = await open_database(storage_config, clock=clock)
    yield database
    await database.close()


def units(count: int) -> list[dict[str, Any]]:
    return [{"n": n} for n in range(count)]


async def advance(stack: BackendStack, seconds: float) -> None:
    """Let `seconds` pass on the agents' clock, and the writes they made settle."""
    stack.clock.advance(seconds)
    await stack.settled()


async def unit_statuses(stack: BackendStack) -> dict[str, int]:
    return await stack.database.count_units_by_status(stack.pool.task_run.id)


def only_info(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert event.get("log_failure") is None, event
        assert event["log_level"] in (LogLevel.debug, LogLevel.info), event


# --- the issue: made-up registrations took every unit, for good ---


@pytest_twisted.ensureDeferred
async def test_made_up_registrations_hold_their_units_only_for_the_window(
    db: Database, clock: Clock
) -> None:
    stack = await BackendStack.make(db, units(10), clock=clock)
    assert stack.pool.settings.assignment_duration == WINDOW
    squatted = {}
    for n in range(10):
        details = await stack.register(f"made-up-{n}", f"reg-{n}")
        assert details["agent_id"] is not None, details
        squatted[n] = details["agent_id"]
    honest = await stack.register("honest", "reg-honest")
    assert (honest["agent_id"], honest["failure_reason"]) == (None, FailureReason.NO_WORK)

    # One of them was a real worker whose laptop slept: back within the window, unpenalised.
    await advance(stack, 1000)
    back = await stack.register("made-up-3", "reg-3")
    assert back["agent_id"] == squatted[3] and back["failure_reason"] is None
    await stack.submit(squatted[3], {"answer": "done at last"})
    await advance(stack, 20)
    assert (await stack.register("honest", "reg-honest"))["failure_reason"] == (
        FailureReason.NO_WORK
    )

    # The window ends, counted from each agent's creation: the nine others expire.
    with capturedLogs() as events:
        await advance(stack, WINDOW - 1020 + 1)
    only_info(list(events))
    for n, agent_id in squatted.items():
        expected = Status.COMPLETED if n == 3 else Status.EXPIRED
        stored = await db.get_agent(agent_id)
        assert stored is not None and stored.status == expected, (n, stored)
        assert stack.statuses_sent(agent_id)[-1] == expected
    assert await unit_statuses(stack) == {UnitStatus.COMPLETED: 1, UnitStatus.AVAILABLE: 9}
    assert stack.per_agent_sizes() == {
        "registry.agents": 0,
        "registry.registrations": 0,
        "routes.channels": 0,
        "runner.units": 0,
        "expiry.timers": 0,
    }

    # The honest worker now gets a unit; a squatter's page is told its time ran out.
    honest = await stack.register("honest", "reg-honest")
    assert honest["agent_id"] is not None and honest["failure_reason"] is None
    again = await stack.register("made-up-0", "reg-0")
    assert (again["agent_id"], again["failure_reason"]) == (None, FailureReason.EXPIRED)
    # A new page of theirs is a new registration, as for any worker.
    assert (await stack.register("made-up-0", "reg-0b"))["agent_id"] is not None


@pytest_twisted.ensureDeferred
async def test_the_expired_status_is_pushed_to_the_router(db: Database, clock: Clock) -> None:
    stack = await BackendStack.make(db, units(2), clock=clock, assignment_duration=60)
    agent_id = (await stack.register("w1", "reg-1"))["agent_id"]
    await advance(stack, 59)
    assert stack.held(agent_id).status == Status.IN_TASK
    await advance(stack, 2)
    assert stack.statuses_sent(agent_id) == [Status.IN_TASK, Status.EXPIRED]
    # A router still showing it at work (it read its statuses before the push) is told again.
    stack.channel.clear()
    await stack.router_statuses({agent_id: Status.IN_TASK})
    assert stack.statuses_sent(agent_id) == [Status.EXPIRED]


@pytest_twisted.ensureDeferred
async def test_with_return_units_off_an_expired_unit_stays_used(db: Database, clock: Clock) -> None:
    stack = await BackendStack.make(
        db, units(1), clock=clock, assignment_duration=60, return_units=False
    )
    agent_id = (await stack.register("w1"))["agent_id"]
    await advance(stack, 61)
    assert stack.statuses_sent(agent_id)[-1] == Status.EXPIRED
    assert await unit_statuses(stack) == {UnitStatus.RESERVED: 1}


@pytest_twisted.ensureDeferred
async def test_a_live_agent_waiting_for_partners_expires(db: Database, clock: Clock) -> None:
    started: list[Assignment] = []

    async def run_assignment(assignment: Assignment, agents: list[Agent]) -> None:
        started.append(assignment)

    task = TaskDefinition(kind=LIVE, run_assignment=run_assignment)
    stack = await BackendStack.make(
        db, units(1), task, clock=clock, units_per_assignment=2, assignment_duration=60
    )
    alice = (await stack.register("alice"))["agent_id"]
    assert stack.held(alice).status == Status.WAITING
    await advance(stack, 61)
    assert stack.statuses_sent(alice)[-1] == Status.EXPIRED
    assert stack.pool.get_agent(alice) is None and stack.sizes()["live.agents"] == 0
    # Her seat is free again: two new workers fill the room.
    for worker in ("bob", "carol"):
        assert (await stack.register(worker))["agent_id"] is not None
    assert len(started) == 1


# --- onboarding agents ---


@pytest_twisted.ensureDeferred
async def test_an_onboarding_agent_expires_and_its_late_answers_are_refused(
    db: Database, clock: Clock
) -> None:
    def onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
        return {"question": "2+2?"}

    task = TaskDefinition(onboarding_data=onboarding_data)
    stack = await BackendStack.make(
        db,
        units(2),
        task,
        clock=clock,
        onboarding=True,
        allowed_concurrent=1,
        assignment_duration=60,
    )
    onboarding = (await stack.register("w1", "reg-1"))["agent_id"]
    assert onboarding.startswith("onboarding-")
    await advance(stack, 61)
    assert stack.statuses_sent(onboarding) == [Status.ONBOARDING, Status.EXPIRED]
    assert stack.pool.get_agent(onboarding) is None
    with capturedLogs() as events:
        late = await stack.onboard(onboarding, "4")
    only_info(list(events))
    assert (late["agent_id"], late["failure_reason"]) == (None, FailureReason.EXPIRED)
    assert await db.list_submissions(agent_id=onboarding) == []
    # Onboarding decides nothing until passed: a reload starts it afresh (it held no unit),
    # and the expired one no longer counts against allowed_concurrent.
    again = (await stack.register("w1", "reg-1"))["agent_id"]
    assert again.startswith("onboarding-") and again != onboarding
    # Passing onboarding gives a unit agent with a window of its own.
    await advance(stack, 50)
    unit_agent = (await stack.onboard(again, "4"))["agent_id"]
    await advance(stack, 50)
    assert stack.held(unit_agent).status == Status.IN_TASK
    await advance(stack, 11)
    assert stack.statuses_sent(unit_agent)[-1] == Status.EXPIRED


# --- a submission after the window ---


class FakeUploads:
    """The router's uploads, as the backend's store reaches them."""

    def __init__(self) -> None:
        self.discarded: list[tuple[str, str]] = []

    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        return succeed(b"content")

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        self.discarded.append((filename, agent_id))
        return succeed(None)


@pytest_twisted.ensureDeferred
async def test_a_submission_after_the_window_is_refused(db: Database, clock: Clock) -> None:
    uploads = FakeUploads()
    stack = await BackendStack.make(
        db, units(1), clock=clock, assignment_duration=60, files=uploads
    )
    agent_id = (await stack.register("w1", "reg-1"))["agent_id"]
    await advance(stack, 61)
    taker = (await stack.register("w2", "reg-2"))["agent_id"]
    assert taker is not None  # the unit went back to the pool, and to another worker
    stack.channel.clear()
    file = {"fieldname": "f", "originalname": "a.txt", "filename": "abc.txt", "size": 7}
    with capturedLogs() as events:
        await stack.submit(agent_id, {"answer": "too late", "files": [file]})
    about = [e for e in events if e.get("agent_id") == agent_id]
    assert about and "refused" in about[-1]["log_format"]
    only_info(about)
    assert await db.list_submissions(agent_id=agent_id, kind=SubmissionKind.UNIT) == []
    assert uploads.discarded == [("abc.txt", agent_id)]  # the router's copy goes
    # The worker is told again, through the router the submission came from.
    assert stack.statuses_sent(agent_id) == [Status.EXPIRED]
    stored = await db.get_agent(agent_id)
    assert stored is not None and stored.status == Status.EXPIRED
    assert await unit_statuses(stack) == {UnitStatus.RESERVED: 1}  # still the taker's
    await stack.submit(taker, {"answer": "in time"})
    assert await unit_statuses(stack) == {UnitStatus.COMPLETED: 1}


@pytest_twisted.ensureDeferred
async def test_a_submission_after_a_disconnect_within_the_window_is_still_kept(
    db: Database, clock: Clock
) -> None:
    stack = await BackendStack.make(db, units(1), clock=clock, assignment_duration=60)
    agent_id = (await stack.register("w1"))["agent_id"]
    await stack.router_statuses({agent_id: Status.DISCONNECT})
    await advance(stack, 120)  # no timer is left to expire it
    await stack.submit(agent_id, {"answer": 1})
    stored = await db.list_submissions(agent_id=agent_id, kind=SubmissionKind.UNIT)
    assert [s.data for s in stored] == [{"answer": 1}]
    assert len(clock.getDelayedCalls()) == 0


# --- the timer itself ---


def an_agent(clock: Clock, agent_id: str = "a1") -> Agent:
    agent = Agent(clock, agent_id, "w1", {})
    agent.set_status(Status.IN_TASK)
    return agent


def test_the_timer_goes_once_the_agent_is_final() -> None:
    clock = Clock()
    expiry = AgentExpiry(clock, 60)
    agent = an_agent(clock)
    expiry.watch(agent)
    assert len(expiry) == 1 and len(clock.getDelayedCalls()) == 1
    agent.set_status(Status.COMPLETED)
    assert len(expiry) == 0 and clock.getDelayedCalls() == []


def test_a_submission_being_stored_when_time_runs_out_is_waited_for() -> None:
    clock = Clock()
    expiry = AgentExpiry(clock, 60)
    agent = an_agent(clock)
    expiry.watch(agent)
    agent.submitted = True  # came within the window; its storage is under way
    clock.advance(61)
    assert agent.status == Status.IN_TASK
    agent.set_status(Status.COMPLETED)
    assert clock.getDelayedCalls() == []
    # One whose storage failed (its page was told 503) expires soon after.
    other = an_agent(clock, "a2")
    expiry.watch(other)
    other.submitted = True
    clock.advance(61)
    other.submitted = False
    clock.advance(60)
    assert other.status == Status.EXPIRED


def test_a_thousand_agents_share_one_timer_and_each_expires_at_its_own_time() -> None:
    clock = Clock()
    expiry = AgentExpiry(clock, 60)
    agents = []
    for n in range(1000):
        agents.append(an_agent(clock, f"a{n}"))
        expiry.watch(agents[-1])
        clock.advance(0.01)  # created 10 ms apart: the last at 9.99 s; now 10 s
    assert len(expiry) == 1000 and len(clock.getDelayedCalls()) == 1
    clock.advance(54.995)  # now 64.995: the first 500 are over, the rest not yet
    statuses = [agent.status for agent in agents]
    assert statuses == [Status.EXPIRED] * 500 + [Status.IN_TASK] * 500
    assert len(expiry) == 500 and len(clock.getDelayedCalls()) == 1
    clock.advance(5)
    assert {agent.status for agent in agents} == {Status.EXPIRED}
    assert len(expiry) == 0 and clock.getDelayedCalls() == []


def test_a_later_shorter_wait_is_not_held_behind_an_earlier_longer_one() -> None:
    clock = Clock()
    expiry = AgentExpiry(clock, 60)
    first, storing = an_agent(clock, "first"), an_agent(clock, "storing")
    expiry.watch(storing)
    storing.submitted = True
    clock.advance(30)
    expiry.watch(first)  # runs out at 90
    clock.advance(30)  # storing's window is over at 60: it waits STORING_GRACE more
    assert storing.status == Status.IN_TASK
    storing.submitted = False  # its storage failed
    clock.advance(10)  # 70: its grace is over, long before first's window
    assert (storing.status, first.status) == (Status.EXPIRED, Status.IN_TASK)
    clock.advance(20)
    assert first.status == Status.EXPIRED


def watched_agents(clock: Clock, expiry: AgentExpiry, count: int) -> list[Agent]:
    agents = [an_agent(clock, f"a{n}") for n in range(count)]
    for agent in agents:
        expiry.watch(agent)
    return agents


def test_agents_done_early_leave_no_more_than_twice_their_number_behind() -> None:
    clock = Clock()
    expiry = AgentExpiry(clock, 3600)
    agents = watched_agents(clock, expiry, 1000)
    for agent in agents[10:]:
        agent.set_status(Status.COMPLETED)
    assert len(expiry) == 10
    assert len(expiry._deadlines) <= 2 * 10 + 64
    clock.advance(3600)
    assert [agent.status for agent in agents[:10]] == [Status.EXPIRED] * 10
    assert {agent.status for agent in agents[10:]} == {Status.COMPLETED}


def test_a_window_counted_from_an_earlier_creation() -> None:
    clock = Clock()
    clock.advance(1000)
    expiry = AgentExpiry(clock, 60)
    late, overdue = an_agent(clock, "late"), an_agent(clock, "overdue")
    expiry.watch(late, created_at=990)
    expiry.watch(overdue, created_at=900)
    assert overdue.status == Status.IN_TASK  # never at once: on the clock's next turn
    clock.advance(0)
    assert (late.status, overdue.status) == (Status.IN_TASK, Status.EXPIRED)
    clock.advance(50)
    assert late.status == Status.EXPIRED


def test_stop_cancels_every_timer() -> None:
    clock = Clock()
    expiry = AgentExpiry(clock, 60)
    agents = watched_agents(clock, expiry, 3)
    expiry.stop()
    assert len(expiry) == 0 and clock.getDelayedCalls() == []
    clock.advance(120)
    assert {a.status for a in agents} == {Status.IN_TASK}


# --- a restart of the daemon ---


@pytest_twisted.ensureDeferred
async def test_a_restart_continues_the_window_from_the_agents_creation(
    storage_config: StorageConfig,
) -> None:
    first_life = Clock()
    db = await open_database(storage_config, clock=first_life)
    stack = await BackendStack.make(db, units(3), clock=first_life, assignment_duration=100)
    early = (await stack.register("w1", "reg-1"))["agent_id"]
    first_life.advance(50)
    later = (await stack.register("w2", "reg-2"))["agent_id"]
    await db.close()

    second_life = Clock()
    second_life.advance(120)  # down for 70 s: `early`'s window ended meanwhile
    db = await open_database(storage_config, clock=second_life)
    try:
        stack = await BackendStack.make(db, units(3), clock=second_life, assignment_duration=100)
        resumption = Resumption(second_life, window=60.0, static_task=True)
        stack.handler.resumption = resumption
        await resumption.start(db, stack.pool.task_run.id, stack.pool.registry, stack.runner)
        stack.channel.open()  # the only router: the static pages' agents are its own
        await advance(stack, 0)
        assert stack.statuses_sent(early)[-1] == Status.EXPIRED
        assert stack.held(later).status == Status.IN_TASK
        # `later` comes back within what is left of its window, and keeps its agent.
        await advance(stack, 10)
        assert (await stack.register("w2", "reg-2"))["agent_id"] == later
        await advance(stack, 19)
        assert stack.held(later).status == Status.IN_TASK
        await advance(stack, 2)  # 150 + 1: its window ends 100 s after its creation, at 150
        assert stack.statuses_sent(later)[-1] == Status.EXPIRED
        assert await unit_statuses(stack) == {UnitStatus.AVAILABLE: 3}
        assert (await stack.register("w1", "reg-1"))["failure_reason"] == FailureReason.EXPIRED
        assert stack.per_agent_sizes()["expiry.timers"] == 0
    finally:
        await db.close()


# --- the key ---


def test_the_key_is_positive_seconds_with_a_finite_default(tmp_path: Path) -> None:
    assert TaskConfig().assignment_duration == WINDOW
    path = tmp_path / "router.ini"
    path.write_text("[task]\nassignment_duration = 90.5\n")
    assert load_config(path).task.assignment_duration == 90.5
    for wrong in ("0", "-1", "inf", "soon"):
        path.write_text(f"[task]\nassignment_duration = {wrong}\n")
        with pytest.raises(ConfigError, match=r"\[task\] assignment_duration: "):
            load_config(path)
    assert TaskConfig(assignment_duration=60).summary()["assignment_duration"] == 60


def warnings_building(config: Config) -> list[str]:
    with capturedLogs() as events:
        build_service(config, reactor)
    return [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]


def test_a_live_timeout_the_window_would_cut_short_is_warned_about(tmp_path: Path) -> None:
    live = {"name": "chat", "module": "architect.demo.task", "timeout": 1800.0}
    [warning] = warnings_building(daemon_config(tmp_path, task=live))
    assert "[task] timeout (1800.0 s) is not below assignment_duration (1800.0 s)" in warning
    shipped = relocated(load_config(ROOT / "examples" / "live_chat" / "router.ini"), tmp_path)
    assert shipped.task.timeout < shipped.task.assignment_duration
    assert warnings_building(shipped) == []


# --- black box: a real embedded daemon ---


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_a_daemon_gives_squatted_units_back_after_the_window(daemons: Daemons) -> None:
    duration = 1.5  # seconds: room for eleven registrations on a slow machine
    daemon = await daemons.embedded(task={"assignment_duration": duration})
    browsers = Browsers()

    async def register(worker: str, registration_id: str) -> dict[str, Any]:
        browser = browsers.of_worker(worker)
        provider = {
            "worker_name": worker,
            "agent_registration_id": registration_id,
            "provider_type": "mock",
        }
        code, answer = await browser.post_json(
            f"{daemon.url}/request_agent", {"provider_data": provider}
        )
        assert code == 200, answer
        data: dict[str, Any] = answer["data"]
        browsers.registered(data, browser)
        return data

    squatted = [(await register(f"made-up-{n}", f"1-made-up-{n}"))["agent_id"] for n in range(10)]
    assert all(squatted)
    # One squatter's page holds a socket: it is told when the time runs out.
    first = squatted[0]
    socket = await browsers.of_agent(first).open_socket(daemon.port)
    socket.send(ALIVE, first)
    refused = await register("honest", "1-honest")
    assert refused["failure_reason"] == FailureReason.NO_WORK

    await wait_for(
        lambda: Status.EXPIRED in socket.statuses(), "the expired status", deadline=duration + 5
    )

    async def all_back() -> bool:
        counts = await daemon.database.count_units_by_status(daemon.task_run_id)
        return counts == {UnitStatus.AVAILABLE: 10}

    await wait_for(all_back, "the units back in the pool", deadline=duration + 5)
    honest = await register("honest", "1-honest")
    assert honest["agent_id"] is not None and honest["failure_reason"] is None

    # Too late: the backend keeps none of it, and the worker is told so (not "Submitted!").
    code, answer = await browsers.of_agent(first).post_json(
        f"{daemon.url}/submit_task", {"USED_AGENT_ID": first, "final_data": {"answer": 1}}
    )
    assert code == 409 and "expired" in answer["error"], answer
    assert await daemon.database.list_submissions(agent_id=first) == []
    reload = await register("made-up-0", "1-made-up-0")
    assert (reload["agent_id"], reload["failure_reason"]) == (None, FailureReason.EXPIRED)
    await socket.close()
