"""The backend's writer of connection events (backend/connection_events.py) on a real
database: batched on its clock, bounded, a failed write logged and nothing more."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from architect.backend.connection_events import StoredConnectionEvents
from architect.config import StorageConfig
from architect.connection_events import ConnectionEvent, EventRepeats
from architect.connection_events import ConnectionEventKind as Kind
from architect.storage import Database, open_database


@pytest_twisted.async_yield_fixture
async def db(storage_config: StorageConfig) -> AsyncIterator[Database]:
    database = await open_database(storage_config)
    yield database
    await database.close()


async def run_with_agent(db: Database) -> int:
    run = await db.find_or_create_task_run("run-1", {})
    await db.add_assignments(run.id, [{}], 1)
    units = [u.id for u in await db.list_units(run.id)]
    worker = await db.find_or_create_worker("mock", "alice")
    await db.reserve_unit(run.id, worker.id, "a1", units)
    return run.id


async def kept(db: Database, run_id: int) -> list[str]:
    events, _ = await db.connection_events(run_id)
    return [e.event for e in events]


@pytest_twisted.ensureDeferred
async def test_events_are_written_together_once_their_time_comes(db: Database) -> None:
    run_id = await run_with_agent(db)
    clock = Clock()
    writer = StoredConnectionEvents(db, clock, every=0.5)
    writer.add([ConnectionEvent("a1", Kind.SOCKET_OPEN, 1.0)])
    writer.add(
        [ConnectionEvent("a1", Kind.ROUTER_LOST, 2.0)], [EventRepeats("a1", Kind.RELOAD, 4, 3.0)]
    )
    assert len(clock.getDelayedCalls()) == 1  # one write for both
    assert await kept(db, run_id) == []
    clock.advance(0.5)
    assert not writer.events and not writer.repeats  # taken by the write now under way
    await writer.settled()
    assert await kept(db, run_id) == [Kind.SOCKET_OPEN, Kind.ROUTER_LOST]
    _, repeats = await db.connection_events(run_id)
    assert [(r.event, r.repeats) for r in repeats] == [(Kind.RELOAD, 4)]
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_past_its_bound_events_are_dropped_and_counted(db: Database) -> None:
    run_id = await run_with_agent(db)
    writer = StoredConnectionEvents(db, Clock(), max_waiting=3)
    with capturedLogs() as events:
        writer.add([ConnectionEvent("a1", Kind.RELOAD, float(i)) for i in range(5)])
        writer.add([ConnectionEvent("a1", Kind.SOCKET_OPEN, 9.0)])
        await writer.settled()
    assert await kept(db, run_id) == [Kind.RELOAD] * 3
    told = [formatEvent(e) for e in events]
    assert sum("more are dropped" in line for line in told) == 1  # once per overflow
    assert any("dropped 3 connection events" in line for line in told)


@pytest_twisted.ensureDeferred
async def test_a_failed_write_is_logged_and_the_next_ones_go_on(db: Database) -> None:
    run_id = await run_with_agent(db)
    writer = StoredConnectionEvents(db, Clock())
    with capturedLogs() as events:
        writer.add([ConnectionEvent("a1", "no_such_kind", 1.0)])  # the database refuses it
        await writer.settled()
    assert any("storing 1 connection events failed" in formatEvent(e) for e in events)
    writer.add([ConnectionEvent("a1", Kind.SOCKET_CLOSE, 2.0, code=1006)])
    await writer.settled()
    assert await kept(db, run_id) == [Kind.SOCKET_CLOSE]


@pytest.mark.parametrize("engine", ["sqlite"])
@pytest_twisted.ensureDeferred
async def test_settled_waits_for_a_write_under_way(db: Database) -> None:
    run_id = await run_with_agent(db)
    clock = Clock()
    writer = StoredConnectionEvents(db, clock)
    writer.add([ConnectionEvent("a1", Kind.SOCKET_OPEN, 1.0)])
    clock.advance(writer.every)  # a write under way
    writer.add([ConnectionEvent("a1", Kind.RELOAD, 2.0)])  # waits for the next one
    await writer.settled()
    assert await kept(db, run_id) == [Kind.SOCKET_OPEN, Kind.RELOAD]
