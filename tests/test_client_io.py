"""The ClientIOHandler with fake channels, the in-memory pool and a task.Clock: no sockets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from architect.backend.client_io import ClientIOHandler
from architect.backend.registration import Registration
from architect.connection_events import ConnectionEvent, EventRepeats, to_wire
from architect.connection_events import ConnectionEventKind as Kind
from architect.protocol import (
    AGENT_DETAILS,
    CLIENT_BOUND_LIVE_UPDATE,
    CONNECTION_EVENTS,
    HEARTBEAT,
    LOG_ERROR,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    RETURN_STATUSES,
    SUBMIT_METADATA,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    FailureReason,
    Handled,
    Outcome,
    Packet,
    Status,
)
from architect.tasks.agent import Agent, AgentGone
from tests.backend_fakes import FakeChannel
from tests.memory_backend import MemoryStore, MemoryWorkerPool

UNITS = [{"text": "first"}, {"text": "second"}, {"text": "third"}]


class Backend:
    """A handler wired to a pool, a store and one fake channel."""

    def __init__(
        self,
        units: list[dict[str, Any]] | None = None,
        remembered_ids: int = 10_000,
        **pool_options: Any,
    ) -> None:
        self.clock = Clock()
        self.pool = MemoryWorkerPool(self.clock, UNITS if units is None else units, **pool_options)
        self.store = MemoryStore()
        self.handler = ClientIOHandler(
            self.clock, self.pool, self.store, status_interval=4.0, remembered_ids=remembered_ids
        )
        self.channel = self.add_channel("one")

    def add_channel(self, name: str) -> FakeChannel:
        channel = FakeChannel(name)
        self.handler.add_channel(channel)
        return channel

    def register(
        self,
        request_id: str,
        worker: str = "w1",
        registration_id: str | None = None,
        channel: FakeChannel | None = None,
    ) -> dict[str, Any]:
        """Send register_agent; the data of the agent_details answer for it."""
        channel = channel or self.channel
        provider_data: dict[str, Any] = {"worker_name": worker, "provider_type": "mock"}
        if registration_id is not None:
            provider_data["agent_registration_id"] = registration_id
        channel.receive(
            REGISTER_AGENT, request_id, {"provider_data": provider_data, "request_id": request_id}
        )
        return answer_to(channel, request_id)

    def agent(self, agent_id: str) -> Agent:
        """An agent the pool made, at work or finished."""
        return self.pool.made[agent_id]


def answer_to(channel: FakeChannel, request_id: str) -> dict[str, Any]:
    answers = [p for p in channel.of_type(AGENT_DETAILS) if p.data["request_id"] == request_id]
    assert len(answers) == 1, f"{len(answers)} answers to {request_id}"
    assert answers[0].subject_id == request_id
    return answers[0].data


def statuses_sent(channel: FakeChannel, agent_id: str) -> list[str]:
    return [p.data["status"] for p in channel.of_type(UPDATE_STATUS) if p.subject_id == agent_id]


# --- register_agent ---


def test_register_agent_answers_agent_details_then_pushes_the_status() -> None:
    b = Backend()
    details = b.register("r1")
    assert re.fullmatch(r"[0-9a-f]{32}", details["agent_id"])
    assert details["init_task_data"] == {"text": "first"}
    assert details["failure_reason"] is None
    assert details["worker_id"]
    assert b.channel.types() == [AGENT_DETAILS, UPDATE_STATUS]
    assert statuses_sent(b.channel, details["agent_id"]) == [Status.IN_TASK]
    assert all(p.server_timestamp is not None for p in b.channel.sent)


def test_agent_ids_are_unguessable_and_distinct() -> None:
    b = Backend()
    ids = {b.register(f"r{n}", worker=f"w{n}")["agent_id"] for n in range(3)}
    assert len(ids) == 3


def test_a_repeated_register_agent_is_answered_once() -> None:
    b = Backend()
    b.register("r1")
    b.channel.receive(
        REGISTER_AGENT, "r1", {"provider_data": {"worker_name": "w1"}, "request_id": "r1"}
    )
    answer_to(b.channel, "r1")  # still exactly one
    assert len(b.pool.agents) == 1


def test_request_id_memory_is_bounded() -> None:
    b = Backend(units=[{"n": n} for n in range(10)], remembered_ids=2)
    b.register("r1", worker="w1")
    b.register("r2", worker="w2")
    b.register("r3", worker="w3")
    assert len(b.handler.answered_requests) == 2
    b.channel.receive(
        REGISTER_AGENT, "r1", {"provider_data": {"worker_name": "w4"}, "request_id": "r1"}
    )
    assert len([p for p in b.channel.of_type(AGENT_DETAILS) if p.subject_id == "r1"]) == 2


def test_registration_failure_reasons() -> None:
    b = Backend(units=[{"n": 1}], blocked_workers=["bad"], max_units_per_worker=1)
    assert b.register("r1", worker="bad")["failure_reason"] == FailureReason.NOT_QUALIFIED
    first = b.register("r2", worker="w1")
    assert first["agent_id"] is not None
    assert b.register("r3", worker="w1")["failure_reason"] == FailureReason.MAX_UNITS
    refused = b.register("r4", worker="w2")
    assert refused["failure_reason"] == FailureReason.NO_WORK
    assert refused["agent_id"] is None
    assert refused["worker_id"]


def test_too_many_concurrent_units() -> None:
    b = Backend(max_concurrent=1)
    b.register("r1", worker="w1", registration_id="a1-w1")
    details = b.register("r2", worker="w1", registration_id="a2-w1")
    assert details["failure_reason"] == FailureReason.TOO_MANY_CONCURRENT


@pytest.mark.parametrize(
    "provider_data", [{}, "not an object", None, {"worker_name": 5}, {"worker_name": ""}]
)
def test_bad_provider_data_gets_an_answer_and_one_log_line(provider_data: Any) -> None:
    b = Backend()
    with capturedLogs() as events:
        b.channel.receive(
            REGISTER_AGENT, "r1", {"provider_data": provider_data, "request_id": "r1"}
        )
    details = answer_to(b.channel, "r1")
    assert details["agent_id"] is None
    assert details["failure_reason"] == FailureReason.NO_WORK
    # An expected refusal: one line saying why, no traceback.
    assert [e for e in events if e.get("log_failure") is not None] == []
    [line] = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
    assert "r1" in line and "worker_name" in line and "\n" not in line


class BrokenPool(MemoryWorkerPool):
    def register(self, provider_data: dict[str, Any]) -> Deferred[Registration]:
        return fail(RuntimeError("a bug"))


def test_a_registration_that_fails_unexpectedly_is_logged_with_its_traceback() -> None:
    b = Backend()
    b.handler.pool = BrokenPool(b.clock, UNITS)
    with capturedLogs() as events:
        b.channel.receive(REGISTER_AGENT, "r1", {"provider_data": {}, "request_id": "r1"})
    assert answer_to(b.channel, "r1")["failure_reason"] == FailureReason.NO_WORK
    assert any(e.get("log_failure") is not None for e in events)


def test_reregistration_returns_the_same_agent_with_past_live_updates() -> None:
    b = Backend()
    agent_id = b.register("r1", registration_id="a1-w1")["agent_id"]
    agent = b.agent(agent_id)
    agent.observe({"text": "hello"})
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "text": "hi"})
    b.channel.clear()
    again = b.register("r2", registration_id="a1-w1")
    assert again["agent_id"] == agent_id
    past = again["init_task_data"]["past_live_updates"]
    assert [u["text"] for u in past] == ["hello", "hi"]
    assert again["init_task_data"]["text"] == "first"
    # the status is pushed again, for a router that may not know it
    assert b.channel.types() == [AGENT_DETAILS, UPDATE_STATUS]
    assert len(b.pool.agents) == 1


def test_registration_id_of_a_finished_agent_is_task_missing() -> None:
    b = Backend()
    agent_id = b.register("r1", registration_id="a1-w1")["agent_id"]
    b.agent(agent_id).set_status(Status.DISCONNECT)
    details = b.register("r2", registration_id="a1-w1")
    assert details["agent_id"] is None
    assert details["failure_reason"] == FailureReason.TASK_MISSING


def test_registration_id_of_another_worker_is_refused() -> None:
    b = Backend()
    b.register("r1", worker="w1", registration_id="a1-w1")
    details = b.register("r2", worker="intruder", registration_id="a1-w1")
    assert details["agent_id"] is None
    assert details["failure_reason"] == FailureReason.TASK_MISSING


def test_a_disconnected_agent_frees_its_unit() -> None:
    b = Backend(units=[{"n": 1}])
    agent_id = b.register("r1", worker="w1")["agent_id"]
    assert b.register("r2", worker="w2")["failure_reason"] == FailureReason.NO_WORK
    b.agent(agent_id).set_status(Status.DISCONNECT)
    details = b.register("r3", worker="w2")
    assert details["init_task_data"] == {"n": 1}


# --- onboarding ---


def onboard(b: Backend, agent_id: str, request_id: str, answer: str) -> dict[str, Any]:
    b.channel.receive(
        SUBMIT_ONBOARDING,
        agent_id,
        {"onboarding_data": {"answer": answer}, "request_id": request_id},
    )
    return answer_to(b.channel, request_id)


def test_onboarding_passed_leads_to_a_unit() -> None:
    b = Backend(
        onboarding_data={"question": "2+2?"},
        check_onboarding=lambda data: data.get("answer") == "4",
    )
    details = b.register("r1", registration_id="a1-w1")
    onboarding_id = details["agent_id"]
    assert onboarding_id.startswith("onboarding")
    assert details["init_task_data"] == {"question": "2+2?"}
    assert statuses_sent(b.channel, onboarding_id) == [Status.ONBOARDING]
    passed = onboard(b, onboarding_id, "o1", "4")
    assert [s.data for s in b.store.of_agent(onboarding_id, "onboarding")] == [{"answer": "4"}]
    assert passed["failure_reason"] is None
    assert passed["agent_id"] != onboarding_id
    assert passed["init_task_data"] == {"text": "first"}
    assert statuses_sent(b.channel, passed["agent_id"]) == [Status.IN_TASK]
    # a reload after onboarding finds the unit agent
    assert b.register("r2", registration_id="a1-w1")["agent_id"] == passed["agent_id"]


def test_onboarding_failed_blocks_the_worker() -> None:
    b = Backend(check_onboarding=lambda data: data.get("answer") == "4")
    onboarding_id = b.register("r1", registration_id="a1-w1")["agent_id"]
    failed = onboard(b, onboarding_id, "o1", "5")
    assert failed["agent_id"] is None
    assert failed["failure_reason"] == FailureReason.NOT_QUALIFIED
    assert b.register("r2", registration_id="a2-w1")["failure_reason"] == (
        FailureReason.NOT_QUALIFIED
    )


def test_onboarding_check_may_answer_later_and_repeats_are_answered_once() -> None:
    verdict: Deferred[bool] = Deferred()
    b = Backend(check_onboarding=lambda data: verdict)
    onboarding_id = b.register("r1")["agent_id"]
    request = {"onboarding_data": {"answer": "4"}, "request_id": "o1"}
    b.channel.receive(SUBMIT_ONBOARDING, onboarding_id, request)
    b.channel.receive(SUBMIT_ONBOARDING, onboarding_id, request)
    assert [p for p in b.channel.of_type(AGENT_DETAILS) if p.subject_id == "o1"] == []
    verdict.callback(True)
    assert answer_to(b.channel, "o1")["agent_id"] is not None


def test_onboarding_for_an_unknown_agent_is_task_missing() -> None:
    b = Backend(check_onboarding=lambda data: True)
    assert onboard(b, "nobody", "o1", "4")["failure_reason"] == FailureReason.TASK_MISSING


# --- submissions ---


def test_submit_unit_is_stored_once_and_completes_the_agent() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    waiting = b.agent(agent_id).act()
    b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 42})
    b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 42})
    stored = b.store.of_agent(agent_id, "unit")
    assert [s.data for s in stored] == [{"answer": 42}]
    assert stored[0].worker_id == b.agent(agent_id).worker_id
    assert b.agent(agent_id).status == Status.COMPLETED
    assert statuses_sent(b.channel, agent_id) == [Status.IN_TASK, Status.COMPLETED]
    errors: list[Any] = []
    waiting.addErrback(errors.append)
    assert isinstance(errors[0].value, AgentGone)


def test_submit_metadata_is_stored_once_per_distinct_packet() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    b.channel.receive(SUBMIT_METADATA, agent_id, {"feedback": "fine"})
    b.channel.receive(SUBMIT_METADATA, agent_id, {"feedback": "fine"})
    b.channel.receive(SUBMIT_METADATA, agent_id, {"feedback": "more"})
    assert [s.data for s in b.store.of_agent(agent_id, "metadata")] == [
        {"feedback": "fine"},
        {"feedback": "more"},
    ]
    assert b.agent(agent_id).status == Status.IN_TASK


class FlakyStore(MemoryStore):
    """Fails the first unit submission, as a full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None = None,
        completes: bool = False,
    ) -> Deferred[None]:
        self.attempts += 1
        if self.attempts == 1:
            return fail(OSError("disk full"))
        return super().save_unit_submission(agent_id, worker_id, data, dedupe_key)


def test_a_failed_store_lets_the_repeat_be_stored() -> None:
    b = Backend()
    store = b.handler.store = b.store = FlakyStore()
    agent_id = b.register("r1")["agent_id"]
    with capturedLogs() as events:
        b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    assert any(e.get("log_failure") is not None for e in events)
    assert b.agent(agent_id).status == Status.IN_TASK
    b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    assert store.attempts == 2
    assert [s.data for s in store.of_agent(agent_id)] == [{"answer": 1}]
    assert b.agent(agent_id).status == Status.COMPLETED


class SlowStore(MemoryStore):
    """Keeps unit submissions once told to (a fetch of uploaded files takes time)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[tuple[Deferred[None], dict[str, Any]]] = []

    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None = None,
        completes: bool = False,
    ) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append((d, data))
        return d.addCallback(lambda _: self._keep("unit", agent_id, worker_id, data))

    def finish(self) -> None:
        pending, self.pending = self.pending, []
        for d, _ in pending:
            d.callback(None)


def outcome(handled: Deferred[Any]) -> str:
    """How the backend said it handled a packet (fired already)."""
    assert handled.called
    result = handled.result
    assert isinstance(result, Handled)
    return result.outcome


class SlowFailingStore(SlowStore):
    """Its unit submissions wait, then fail or are kept as the test says."""

    def fail_all(self) -> None:
        pending, self.pending = self.pending, []
        for d, _ in pending:
            d.errback(OSError("disk full"))


def test_a_repeat_during_the_first_copys_save_is_answered_as_the_first_is() -> None:
    # A router that retries (after a 503, or from its journal) must not be told "stored"
    # for a copy whose first save has not committed, and may still fail.
    b = Backend()
    store = b.handler.store = b.handler.finished.store = b.store = SlowFailingStore()
    agent_id = b.register("r1")["agent_id"]
    first = b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    repeat = b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    assert not first.called and not repeat.called
    with capturedLogs():
        store.fail_all()
    assert outcome(first) == outcome(repeat) == Outcome.FAILED
    # Sent again: stored, and a repeat after that is answered stored at once.
    again = b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    store.finish()
    assert outcome(again) == Outcome.STORED
    late = b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    assert outcome(late) == Outcome.STORED
    assert [s.data for s in store.of_agent(agent_id, "unit")] == [{"answer": 1}]
    assert b.agent(agent_id).status == Status.COMPLETED
    counted = b.handler.metrics.value("architect_submissions_total", kind="unit", outcome="stored")
    assert counted == 1  # the repeats are not counted as submissions


def test_a_repeat_during_a_successful_save_waits_for_its_commit() -> None:
    b = Backend()
    store = b.handler.store = b.handler.finished.store = b.store = SlowStore()
    agent_id = b.register("r1")["agent_id"]
    first = b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    repeat = b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    assert not repeat.called
    store.finish()
    assert outcome(first) == outcome(repeat) == Outcome.STORED


def test_an_agent_that_finishes_while_its_submission_is_stored_submits_once() -> None:
    b = Backend()
    store = b.handler.store = b.handler.finished.store = b.store = SlowStore()
    agent_id = b.register("r1")["agent_id"]
    b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 1})
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {agent_id: Status.DISCONNECT})
    assert b.pool.get_agent(agent_id) is None  # finished: no longer held
    with capturedLogs() as events:
        b.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 2})
    assert [e["log_level"] for e in events] == [LogLevel.info]
    store.finish()
    assert [s.data for s in store.of_agent(agent_id, "unit")] == [{"answer": 1}]
    assert b.handler.finished.submitting == set()
    assert b.agent(agent_id).status == Status.DISCONNECT


def test_submission_for_an_unknown_agent_is_kept() -> None:
    b = Backend()
    b.channel.receive(SUBMIT_UNIT, "ghost", {"answer": 1})
    assert [s.agent_id for s in b.store.submissions] == ["ghost"]


# --- live updates ---


def test_live_updates_are_taken_once_by_update_id_and_pulled_with_act() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    agent = b.agent(agent_id)
    for _ in range(2):
        b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "n": 1})
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u2", "n": 2})
    got: list[Any] = []
    agent.act(1).addCallback(got.append)
    agent.act(1).addCallback(got.append)
    agent.act(1).addCallback(got.append)
    assert [g["n"] for g in got] == [1, 2]
    b.clock.advance(1)
    assert got[2] is None


def test_act_waits_for_the_next_update_until_its_timeout() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    agent = b.agent(agent_id)
    got: list[Any] = []
    agent.act(5).addCallback(got.append)
    b.clock.advance(4.999)
    assert got == []
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1"})
    assert got == [{"update_id": "u1"}]
    late: list[Any] = []
    agent.act(5).addCallback(late.append)
    b.clock.advance(4.999)
    assert late == []
    b.clock.advance(0.001)
    assert late == [None]
    # an update after a timed-out act waits for the next act
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u2"})
    agent.act(0).addCallback(late.append)
    assert late == [None, {"update_id": "u2"}]


def test_live_updates_can_be_pushed_to_a_callback() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    agent = b.agent(agent_id)
    pushed: list[tuple[str, dict[str, Any]]] = []
    agent.on_live_update = lambda a, data: pushed.append((a.agent_id, data))
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "x": 1})
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "x": 1})
    assert pushed == [(agent_id, {"update_id": "u1", "x": 1})]


def test_update_id_memory_is_bounded() -> None:
    clock = Clock()
    agent = Agent(clock, "a1", "w1", {}, remembered_update_ids=2)
    agent.set_status(Status.IN_TASK)
    for update_id in ("u1", "u2", "u3"):
        assert agent.receive_live_update({"update_id": update_id})
    assert not agent.receive_live_update({"update_id": "u3"})
    assert agent.receive_live_update({"update_id": "u1"})  # forgotten: taken again


def test_observe_sends_client_bound_updates_with_fresh_update_ids() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    data = {"text": "hello", "update_id": "stale"}
    first = b.agent(agent_id).observe(data)
    second = b.agent(agent_id).send_live_update(data)
    updates = b.channel.of_type(CLIENT_BOUND_LIVE_UPDATE)
    assert [u.subject_id for u in updates] == [agent_id, agent_id]
    ids = [u.data["update_id"] for u in updates]
    assert ids == [first, second]
    assert len(set(ids)) == 2 and "stale" not in ids
    assert all(re.fullmatch(r"[0-9a-f-]{36}", i) for i in ids)
    assert data == {"text": "hello", "update_id": "stale"}  # the caller's dict is untouched


def test_live_update_for_an_unknown_agent_is_dropped() -> None:
    b = Backend()
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, "ghost", {"update_id": "u1"})
    assert b.channel.sent == []


# --- statuses ---


def test_request_statuses_every_interval_on_every_open_channel() -> None:
    b = Backend()
    other = b.add_channel("two")
    closed = b.add_channel("three")
    closed.opened = False
    b.handler.start()
    b.clock.advance(3.999)
    assert b.channel.sent == []
    b.clock.advance(0.001)
    for channel in (b.channel, other):
        assert channel.types() == [REQUEST_STATUSES]
        assert channel.sent[0].subject_id == MEPHISTO
    assert closed.sent == []
    b.clock.advance(4)
    assert len(b.channel.of_type(REQUEST_STATUSES)) == 2
    b.handler.stop()
    b.clock.advance(40)
    assert len(b.channel.of_type(REQUEST_STATUSES)) == 2


def test_a_channel_that_opens_is_asked_for_statuses_at_once() -> None:
    b = Backend()
    late = b.add_channel("late")
    late.opened = False
    late.open()
    assert late.types() == [REQUEST_STATUSES]


def test_return_statuses_takes_disconnect_from_the_router() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    waiting = b.agent(agent_id).act()
    b.channel.clear()
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {agent_id: Status.DISCONNECT})
    assert b.agent(agent_id).status == Status.DISCONNECT
    assert b.channel.sent == []  # the router knows already
    errors: list[Any] = []
    waiting.addErrback(errors.append)
    assert isinstance(errors[0].value, AgentGone)


@pytest.mark.parametrize("router_status", [Status.NONE, Status.WAITING, None])
def test_return_statuses_other_mismatch_repushes_ours(router_status: str | None) -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    b.channel.clear()
    data = {} if router_status is None else {agent_id: router_status}
    b.channel.receive(RETURN_STATUSES, MEPHISTO, data)
    assert statuses_sent(b.channel, agent_id) == [Status.IN_TASK]
    assert b.agent(agent_id).status == Status.IN_TASK


def test_return_statuses_in_agreement_sends_nothing() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    b.channel.clear()
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {agent_id: Status.IN_TASK, "other": "none"})
    assert b.channel.sent == []


@pytest.mark.parametrize("router_status", [Status.IN_TASK, Status.WAITING, Status.ONBOARDING])
def test_agents_unknown_here_but_working_at_the_router_are_told_disconnect(
    router_status: str,
) -> None:
    # e.g. the backend restarted: the router still caches its predecessor's statuses.
    b = Backend()
    mine = b.register("r1")["agent_id"]
    b.channel.clear()
    b.channel.receive(
        RETURN_STATUSES,
        MEPHISTO,
        {mine: Status.IN_TASK, "lost": router_status, "fresh": Status.NONE, "done": "completed"},
    )
    assert [(p.subject_id, p.data) for p in b.channel.of_type(UPDATE_STATUS)] == [
        ("lost", {"status": Status.DISCONNECT})
    ]


def test_an_answer_in_several_packets_repushes_only_what_none_of_them_showed() -> None:
    """A router may answer `request_statuses` in several packets, and ends with an empty
    one: an agent is missing from the router only if no packet showed it."""
    b = Backend()
    shown_first, shown_last, missing = (b.register(f"r{n}")["agent_id"] for n in range(3))
    b.channel.clear()
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {shown_first: Status.IN_TASK, "x": "none"})
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {shown_last: Status.IN_TASK})
    assert b.channel.sent == []  # more may come
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {})
    assert [p.subject_id for p in b.channel.of_type(UPDATE_STATUS)] == [missing]


def test_an_answer_that_never_ends_is_taken_as_whole_at_the_next_request() -> None:
    """A router that sends its whole answer in one packet (Mephisto's): what it did not
    show is pushed when the next request goes out."""
    b = Backend()
    shown, missing = b.register("r1")["agent_id"], b.register("r2")["agent_id"]
    b.channel.clear()
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {shown: Status.IN_TASK})
    assert b.channel.sent == []
    b.handler.request_statuses()
    assert [p.subject_id for p in b.channel.of_type(UPDATE_STATUS)] == [missing]
    assert b.channel.of_type(REQUEST_STATUSES)


def test_disconnect_is_not_taken_for_a_completed_agent() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    b.channel.receive(SUBMIT_UNIT, agent_id, {"done": True})
    b.channel.clear()
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {agent_id: Status.DISCONNECT})
    assert b.agent(agent_id).status == Status.COMPLETED
    # Finished, it is no longer held: a router's final status for it is left as it is
    # (one at work is told ours: test_forgetting.py).
    assert b.channel.sent == []


# --- several channels ---


def test_answers_and_agent_packets_use_the_channel_of_the_registration() -> None:
    b = Backend()
    second = b.add_channel("two")
    a1 = b.register("r1", worker="w1")["agent_id"]
    a2 = b.register("r2", worker="w2", channel=second)["agent_id"]
    b.channel.clear()
    second.clear()
    b.agent(a1).observe({"to": "one"})
    b.agent(a2).observe({"to": "two"})
    assert [p.subject_id for p in b.channel.sent] == [a1]
    assert [p.subject_id for p in second.sent] == [a2]
    # each router's statuses reconcile only its own agents
    second.receive(RETURN_STATUSES, MEPHISTO, {})
    assert [p.subject_id for p in second.of_type(UPDATE_STATUS)] == [a2]
    assert b.channel.of_type(UPDATE_STATUS) == []


def test_an_agent_follows_its_reregistration_to_another_channel() -> None:
    b = Backend()
    second = b.add_channel("two")
    agent_id = b.register("r1", registration_id="a1-w1")["agent_id"]
    again = b.register("r2", registration_id="a1-w1", channel=second)
    assert again["agent_id"] == agent_id
    b.channel.clear()
    second.clear()
    b.agent(agent_id).observe({"n": 1})
    b.agent(agent_id).set_status(Status.COMPLETED)
    assert b.channel.sent == []
    assert second.types() == [CLIENT_BOUND_LIVE_UPDATE, UPDATE_STATUS]


def test_a_finished_agent_loses_its_route_but_still_reaches_its_router() -> None:
    b = Backend()
    second = b.add_channel("two")
    agent_id = b.register("r1", registration_id="a1-w1", channel=second)["agent_id"]
    agent = b.agent(agent_id)
    agent.set_status(Status.COMPLETED)
    assert b.handler.routes.channels == {}
    second.clear()
    with capturedLogs() as events:
        agent.set_status(Status.SOFT_REJECTED)  # e.g. the task's verdict, later
        agent.observe({"text": "thanks"})
    assert second.types() == [UPDATE_STATUS, CLIENT_BOUND_LIVE_UPDATE]
    assert b.channel.sent == []
    assert [e for e in events if e["log_level"] >= LogLevel.warn] == []


def test_catastrophic_loss_disconnects_the_agents_of_that_channel_only() -> None:
    b = Backend()
    second = b.add_channel("two")
    lost = b.register("r1", worker="w1")["agent_id"]
    kept = b.register("r2", worker="w2", channel=second)["agent_id"]
    reported: list[str] = []
    b.handler.on_catastrophic_loss = lambda channel: reported.append(channel.channel_id)
    with capturedLogs() as events:
        b.channel.on_catastrophic_loss(b.channel)
    assert b.agent(lost).status == Status.DISCONNECT
    assert b.agent(kept).status == Status.IN_TASK
    assert reported == ["one"]
    assert any(e["log_level"] == LogLevel.critical for e in events)


# --- errors and other packets ---


def test_version_mismatch_is_logged_loudly() -> None:
    b = Backend()
    with capturedLogs() as events:
        b.channel.receive(
            LOG_ERROR,
            MEPHISTO,
            {
                "error_type": "version-mismatch",
                "expected_version": "2.0.4",
                "received_version": "1.0.0",
            },
        )
    errors = [e for e in events if e["log_level"] == LogLevel.error]
    assert len(errors) == 1
    assert errors[0]["received"] == "1.0.0"


def test_a_version_mismatch_from_mephistos_router_is_logged_with_its_text() -> None:
    b = Backend()
    text = "Package `mephisto-task` version mismatch. Expected version 2.0.4 but ... 1.0.0."
    with capturedLogs() as events:
        b.channel.receive(LOG_ERROR, MEPHISTO, {"error_type": "version-mismatch", "text": text})
    [error] = [e for e in events if e["log_level"] == LogLevel.error]
    assert text in formatEvent(error)


def test_browser_errors_are_logged_with_the_agent() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    with capturedLogs() as events:
        # The shape of Mephisto's routers and ours: the page's error_data is the data.
        b.channel.receive(LOG_ERROR, agent_id, {"message": "oops"})
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    assert len(warnings) == 1
    assert warnings[0]["agent_id"] == agent_id
    assert warnings[0]["agent"] is b.agent(agent_id)
    assert "{'message': 'oops'}" in formatEvent(warnings[0])


def test_a_large_browser_error_is_logged_cut_short() -> None:
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    with capturedLogs() as events:
        b.channel.receive(LOG_ERROR, agent_id, {"stack": "x" * 500_000, "end": "the-end"})
    [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
    line = formatEvent(warning)
    assert "xxxx" in line and "the-end" not in line
    assert len(line) < 2_500
    assert all(len(repr(value)) < 2_500 for value in warning.values())


def test_packets_the_backend_does_not_handle_are_ignored() -> None:
    b = Backend()
    b.channel.receive(HEARTBEAT, MEPHISTO, {})
    assert b.channel.sent == []


def test_a_crashing_handler_is_logged_and_the_backend_goes_on() -> None:
    b = Backend()

    def broken(channel: Any, packet: Packet) -> None:
        raise RuntimeError("bug")

    b.handler.handlers[LOG_ERROR] = broken
    with capturedLogs() as events:
        b.channel.receive(LOG_ERROR, MEPHISTO, {})
    assert any(e.get("log_failure") is not None for e in events)
    assert b.register("r1")["agent_id"] is not None


# --- agents taken back after a restart of the backend ---


def resumed_agent(b: Backend, agent_id: str = "kept", status: str = Status.IN_TASK) -> Agent:
    """An agent as a restarted pool hands it over: its status set, no channel yet."""
    agent = Agent(b.clock, agent_id, "w1", {"text": "first"})
    agent.set_status(status)
    b.pool.agents[agent_id] = b.pool.made[agent_id] = agent
    return agent


def test_a_resumed_agent_is_bound_to_the_router_that_shows_it() -> None:
    b = Backend()
    other = b.add_channel("two")
    agent = resumed_agent(b)
    b.handler.resumption.wait_for([agent], window=60.0)
    assert b.channel.sent == [] and other.sent == []  # nowhere to go yet

    other.receive(RETURN_STATUSES, MEPHISTO, {"kept": Status.IN_TASK})
    assert b.handler.routes.channels["kept"] is other
    assert statuses_sent(other, "kept") == [Status.IN_TASK]  # kept meanwhile, sent now
    assert b.handler.resumption.unclaimed == {}
    agent.observe({"text": "still here"})
    assert [p.data["text"] for p in other.of_type(CLIENT_BOUND_LIVE_UPDATE)] == ["still here"]
    assert b.channel.sent == []

    b.clock.advance(60.0)  # the window ends: an agent that came back is left alone
    assert agent.status == Status.IN_TASK


def test_a_resumed_agent_is_claimed_by_a_packet_about_it() -> None:
    b = Backend()
    agent = resumed_agent(b)
    b.handler.resumption.wait_for([agent], window=60.0)
    waiting = agent.act()
    b.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, "kept", {"text": "hi", "update_id": "u1"})
    taken: list[Any] = []
    waiting.addCallback(taken.append)
    assert taken == [{"text": "hi", "update_id": "u1"}]
    assert b.handler.routes.channels["kept"] is b.channel
    assert statuses_sent(b.channel, "kept") == [Status.IN_TASK]


def test_resumed_agents_not_shown_within_the_window_are_disconnected() -> None:
    b = Backend()
    back, gone = resumed_agent(b, "back"), resumed_agent(b, "gone")
    b.handler.resumption.wait_for([back, gone], window=60.0)
    b.clock.advance(30.0)
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {"back": Status.IN_TASK})
    b.clock.advance(29.9)
    assert gone.status == Status.IN_TASK
    b.clock.advance(0.1)
    assert gone.status == Status.DISCONNECT
    assert back.status == Status.IN_TASK
    assert statuses_sent(b.channel, "gone") == []  # no router holds it: nothing to tell
    assert b.clock.getDelayedCalls() == []


def test_a_router_showing_a_resumed_agent_disconnected_is_believed() -> None:
    b = Backend()
    agent = resumed_agent(b)
    b.handler.resumption.wait_for([agent], window=60.0)
    b.channel.receive(RETURN_STATUSES, MEPHISTO, {"kept": Status.DISCONNECT})
    assert agent.status == Status.DISCONNECT
    assert b.handler.resumption.unclaimed == {}


def test_without_a_window_resumed_agents_wait_until_they_submit() -> None:
    b = Backend()
    agent = resumed_agent(b)
    b.handler.resumption.wait_for([agent], window=None)
    b.clock.advance(86_400.0)
    assert agent.status == Status.IN_TASK
    b.channel.receive(SUBMIT_UNIT, "kept", {"answer": 1})
    assert [s.data for s in b.store.of_agent("kept", "unit")] == [{"answer": 1}]
    assert statuses_sent(b.channel, "kept") == [Status.IN_TASK, Status.COMPLETED]


def test_stopping_the_handler_ends_the_resume_window() -> None:
    b = Backend()
    b.handler.resumption.wait_for([resumed_agent(b)], window=60.0)
    b.handler.stop()
    assert b.clock.getDelayedCalls() == []


def test_a_resumed_agent_whose_page_reloads_is_claimed_by_the_registration() -> None:
    b = Backend()
    details = b.register("r1", registration_id="reg-1")
    agent = b.agent(details["agent_id"])
    del b.handler.routes.channels[agent.agent_id]  # as a restarted backend holds it
    b.handler.resumption.wait_for([agent], window=60.0)
    again = b.register("r2", registration_id="reg-1")
    assert again["agent_id"] == agent.agent_id
    assert b.handler.resumption.unclaimed == {}
    b.clock.advance(60.0)
    assert agent.status == Status.IN_TASK


def test_only_the_agents_given_a_window_lose_their_place_when_it_ends() -> None:
    b = Backend()
    live, form = resumed_agent(b, "live"), resumed_agent(b, "form", Status.ONBOARDING)
    b.handler.resumption.wait_for([live], window=60.0)
    b.handler.resumption.wait_for([form], window=None)
    b.clock.advance(60.0)
    assert live.status == Status.DISCONNECT
    assert form.status == Status.ONBOARDING
    assert list(b.handler.resumption.unclaimed) == ["form"]


def test_the_only_router_is_told_at_once_of_resumed_agents_without_a_socket() -> None:
    """A router that restarted too knows no one: a static page submitting there must not
    be refused as unknown, so the backend pushes those agents' statuses when it opens."""
    b = Backend()
    form, live = resumed_agent(b, "form"), resumed_agent(b, "live")
    b.handler.resumption.wait_for([form], window=None)
    b.handler.resumption.wait_for([live], window=60.0)
    b.handler.channel_opened(b.channel)
    assert statuses_sent(b.channel, "form") == [Status.IN_TASK]
    assert b.handler.routes.channels["form"] is b.channel
    assert list(b.handler.resumption.unclaimed) == ["live"]  # its page shows itself, or not


def test_with_several_routers_resumed_agents_wait_to_be_shown() -> None:
    b = Backend()
    b.add_channel("two")
    form = resumed_agent(b, "form")
    b.handler.resumption.wait_for([form], window=None)
    b.handler.channel_opened(b.channel)
    assert statuses_sent(b.channel, "form") == []
    assert list(b.handler.resumption.unclaimed) == ["form"]


# --- found by fuzzing (tests/test_fuzz.py): a router's odd values, never a traceback ---


def lines_of(events: Sequence[dict[str, Any]]) -> list[str]:
    """The log lines; each must be one printable line, and none a traceback."""
    assert [e for e in events if e.get("log_failure") is not None] == []
    lines = [formatEvent(e) for e in events]
    assert not [line for line in lines if "\n" in line or "\r" in line]
    return lines


def test_odd_entries_of_return_statuses_are_ignored_with_one_line() -> None:
    """A status that is not a string was a TypeError (a traceback); an id with a newline
    went into a log line, and back to the router as a subject."""
    b = Backend()
    agent_id = b.register("r1")["agent_id"]
    b.channel.clear()
    with capturedLogs() as events:
        handled = b.handler.handle_packet(
            b.channel,
            Packet(RETURN_STATUSES, MEPHISTO, {agent_id: [], "x\nforged": Status.IN_TASK}),
        )
    assert handled.result == Handled()
    [line] = lines_of(events)
    assert "ignored 2 odd entries" in line
    assert b.channel.sent == []


def test_a_request_id_with_control_characters_is_not_taken_for_the_answer() -> None:
    b = Backend()
    with capturedLogs() as events:
        b.channel.receive(
            REGISTER_AGENT, "r1", {"provider_data": {}, "request_id": "r\nforged: a line"}
        )
    assert answer_to(b.channel, "r1")["failure_reason"] == FailureReason.NO_WORK
    lines_of(events)


def test_a_version_mismatch_with_control_characters_is_logged_on_one_line() -> None:
    b = Backend()
    data = {"error_type": "version-mismatch", "received_version": "a\nb\ud800"}
    with capturedLogs() as events:
        b.channel.receive(LOG_ERROR, MEPHISTO, {**data, "expected_version": "2.0.4\r"})
    [line] = lines_of(events)
    assert "a\\nb\\ud800" in line
    line.encode("utf-8")  # a log file takes it


# --- connection events ---


class EventList:
    """A ConnectionEventLog that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[ConnectionEvent] = []
        self.repeats: list[EventRepeats] = []

    def add(self, events: Sequence[ConnectionEvent], repeats: Sequence[EventRepeats] = ()) -> None:
        self.events.extend(events)
        self.repeats.extend(repeats)

    def settled(self) -> Deferred[None]:
        return succeed(None)


def with_event_list(b: Backend) -> EventList:
    b.handler.events = kept = EventList()
    return kept


def test_losing_the_router_is_noted_for_the_agents_at_work_on_its_channel() -> None:
    b = Backend()
    kept = with_event_list(b)
    working = b.register("r1", "w1")["agent_id"]
    done = b.register("r2", "w2")["agent_id"]
    b.channel.receive(SUBMIT_UNIT, done, {"answer": 1})
    other = b.add_channel("two")
    elsewhere = b.register("r3", "w3", channel=other)["agent_id"]
    b.clock.advance(5)
    b.channel.on_lost(b.channel)
    assert kept.events == [ConnectionEvent(working, Kind.ROUTER_LOST, 5.0)]
    other.on_lost(other)
    assert kept.events[-1] == ConnectionEvent(elsewhere, Kind.ROUTER_LOST, 5.0)


def sockets(channel: Any, *events: tuple[str, str]) -> None:
    """A router's connection events about its pages' sockets: (agent id, kind)."""
    made = [
        ConnectionEvent(agent_id, kind, 1.0, code=4005 if kind == Kind.SOCKET_CLOSE else None)
        for agent_id, kind in events
    ]
    channel.receive(CONNECTION_EVENTS, MEPHISTO, to_wire(made, [], dropped=0))


def test_with_several_routers_losing_one_is_noted_for_the_pages_on_it_only() -> None:
    b = Backend()
    kept = with_event_list(b)
    other = b.add_channel("two")
    here = b.register("r1", "w1")["agent_id"]  # its packets through one, its page on two
    there = b.register("r2", "w2", channel=other)["agent_id"]  # and the other way round
    sockets(other, (here, Kind.SOCKET_OPEN))
    sockets(b.channel, (there, Kind.SOCKET_OPEN))
    moved = b.register("r3", "w3")["agent_id"]  # its page moved from one to two
    sockets(b.channel, (moved, Kind.SOCKET_OPEN))
    sockets(other, (moved, Kind.RELOAD))
    sockets(b.channel, (moved, Kind.SOCKET_CLOSE))  # one's close comes after two's reload
    b.clock.advance(5)

    def lost() -> list[str]:
        cut_off = sorted(e.agent_id for e in kept.events if e.event == Kind.ROUTER_LOST)
        del kept.events[:]
        return cut_off

    del kept.events[:]
    b.channel.on_lost(b.channel)
    assert lost() == [there]
    other.on_lost(other)
    assert lost() == sorted([here, there, moved])  # there's page had no router left


def test_registering_again_for_the_same_agent_is_noted() -> None:
    b = Backend()
    kept = with_event_list(b)
    agent_id = b.register("r1", "w1", registration_id="reg-1")["agent_id"]
    assert kept.events == []
    b.clock.advance(3)
    assert b.register("r2", "w1", registration_id="reg-1")["agent_id"] == agent_id
    assert kept.events == [ConnectionEvent(agent_id, Kind.REGISTERED_AGAIN, 3.0)]


def test_a_routers_events_are_kept_and_odd_entries_left_out_and_logged() -> None:
    b = Backend()
    kept = with_event_list(b)
    events = [ConnectionEvent("a1", Kind.SOCKET_CLOSE, 2.0, code=1006)]
    data = to_wire(events, [EventRepeats("a1", Kind.RELOAD, 9, 3.0)], dropped=4)
    data["events"].append({"agent_id": "a1", "event": "router_lost", "at": 1.0})
    with capturedLogs() as logged:
        b.channel.receive(CONNECTION_EVENTS, MEPHISTO, data)
    assert kept.events == events
    assert kept.repeats == [EventRepeats("a1", Kind.RELOAD, 9, 3.0)]
    told = [formatEvent(e) for e in logged]
    assert any("left out 1 odd entries" in line for line in told)
    assert any("dropped 4 connection events" in line for line in told)
