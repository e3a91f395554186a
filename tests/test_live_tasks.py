"""Live rooms and remote procedures, driven by task.Clock with real Agent objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from architect.protocol import CLIENT_BOUND_LIVE_UPDATE, Packet, Status
from architect.tasks.agent import Agent
from architect.tasks.hooks import inline_runner
from architect.tasks.live import Assignment, LiveTaskRunner
from architect.tasks.remote_procedure import ProcedureDispatcher


def make_agent(clock: Clock, name: str) -> tuple[Agent, list[Packet]]:
    agent = Agent(clock, f"agent-{name}", f"worker-{name}", {})
    sent: list[Packet] = []
    agent.set_outlet(sent.append)
    agent.set_status(Status.ACCEPTED)
    return agent, sent


class Recorder:
    """A run_assignment that records its calls and finishes when told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Assignment, list[Agent]]] = []
        self.done: Deferred[None] = Deferred()

    def __call__(self, assignment: Assignment, agents: list[Agent]) -> Deferred[None]:
        self.calls.append((assignment, agents))
        return self.done


def test_first_agent_waits_and_both_start_together() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    alice, _ = make_agent(clock, "a")
    bob, _ = make_agent(clock, "b")
    runner.join(alice, "as-1", 2, {"topic": "cats"})
    assert alice.status == Status.WAITING and run.calls == []
    runner.join(bob, "as-1", 2, {"topic": "cats"})
    assert (alice.status, bob.status) == (Status.IN_TASK, Status.IN_TASK)
    ((assignment, agents),) = run.calls
    assert agents == [alice, bob] and assignment.data == {"topic": "cats"}


def test_rejoining_agent_is_not_counted_twice() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    alice, _ = make_agent(clock, "a")
    runner.join(alice, "as-1", 2, {})
    runner.join(alice, "as-1", 2, {})
    assert run.calls == [] and alice.status == Status.WAITING


def test_waiting_agent_that_leaves_frees_its_seat() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    alice, _ = make_agent(clock, "a")
    bob, _ = make_agent(clock, "b")
    carol, _ = make_agent(clock, "c")
    runner.join(alice, "as-1", 2, {})
    alice.set_status(Status.DISCONNECT)
    runner.join(bob, "as-1", 2, {})
    assert run.calls == [] and bob.status == Status.WAITING
    runner.join(carol, "as-1", 2, {})
    assert run.calls[0][1] == [bob, carol]


def test_partner_disconnect_reaches_the_others() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    agents = [make_agent(clock, n)[0] for n in "abc"]
    for agent in agents:
        runner.join(agent, "as-1", 3, {})
    agents[1].set_status(Status.DISCONNECT)
    assert [a.status for a in agents] == [
        Status.PARTNER_DISCONNECT,
        Status.DISCONNECT,
        Status.PARTNER_DISCONNECT,
    ]


def test_completing_does_not_count_as_leaving() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    alice, _ = make_agent(clock, "a")
    bob, _ = make_agent(clock, "b")
    runner.join(alice, "as-1", 2, {})
    runner.join(bob, "as-1", 2, {})
    alice.set_status(Status.COMPLETED)
    assert bob.status == Status.IN_TASK


def test_timeout_exactly_at_the_limit_for_agents_still_working() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner, timeout=60)
    alice, _ = make_agent(clock, "a")
    bob, _ = make_agent(clock, "b")
    runner.join(alice, "as-1", 2, {})
    runner.join(bob, "as-1", 2, {})
    alice.set_status(Status.COMPLETED)
    clock.advance(59.5)
    assert bob.status == Status.IN_TASK
    clock.advance(0.5)
    # Timing out one is not reported to the others as a partner disconnect.
    assert (alice.status, bob.status) == (Status.COMPLETED, Status.TIMEOUT)
    assert runner.assignments == {}


def test_everyone_done_cancels_the_timer_and_forgets_the_room() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner, timeout=60)
    alice, _ = make_agent(clock, "a")
    runner.join(alice, "as-1", 1, {})
    alice.set_status(Status.COMPLETED)
    assert clock.getDelayedCalls() == []
    assert runner.assignments == {}


def test_crashing_run_assignment_expires_the_agents() -> None:
    clock = Clock()

    def broken(assignment: Assignment, agents: list[Agent]) -> None:
        raise RuntimeError("bug in task code")

    runner = LiveTaskRunner(clock, broken, inline_runner)
    alice, sent = make_agent(clock, "a")
    runner.join(alice, "as-1", 1, {})
    assert alice.status == Status.EXPIRED
    assert sent[-1].data == {"status": Status.EXPIRED}


def test_run_assignment_talks_with_observe_and_act() -> None:
    clock = Clock()
    heard: list[Any] = []

    async def echo(assignment: Assignment, agents: list[Agent]) -> None:
        (agent,) = agents
        agent.observe({"text": "say something"})
        update = await agent.act(timeout=30)
        heard.append(update)
        agent.observe({"text": f"you said {update['text'] if update else None}"})

    runner = LiveTaskRunner(clock, echo, inline_runner)
    alice, sent = make_agent(clock, "a")
    runner.join(alice, "as-1", 1, {})
    alice.receive_live_update({"update_id": "u1", "text": "hello"})
    texts = [p.data["text"] for p in sent if p.packet_type == CLIENT_BOUND_LIVE_UPDATE]
    assert texts == ["say something", "you said hello"]
    assert heard == [{"update_id": "u1", "text": "hello"}]


# --- remote procedures ---


def rpc_answers(sent: list[Packet]) -> dict[str, dict[str, Any]]:
    return {p.data["handles"]: p.data for p in sent if p.packet_type == CLIENT_BOUND_LIVE_UPDATE}


def resumed(clock: Clock, name: str, status: str) -> Agent:
    """An agent as a restarted daemon takes it back: its last status, no status change."""
    agent, _ = make_agent(clock, name)
    agent.status = status
    return agent


def test_a_resumed_room_runs_again_with_the_same_agents() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner, timeout=100.0)
    alice, bob = resumed(clock, "a", Status.IN_TASK), resumed(clock, "b", Status.IN_TASK)
    runner.resume([alice, bob], "as-1", 2, {"topic": "cats"})
    ((assignment, agents),) = run.calls
    assert assignment.resumed and agents == [alice, bob]
    assert assignment.data == {"topic": "cats"}
    bob.set_status(Status.DISCONNECT)  # the room works as any other
    assert alice.status == Status.PARTNER_DISCONNECT
    assert runner.assignments == {} and clock.getDelayedCalls() == []


def test_a_resumed_room_missing_a_partner_tells_the_others() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    alice = resumed(clock, "a", Status.IN_TASK)
    runner.resume([alice], "as-1", 2, {})
    assert run.calls == []
    assert alice.status == Status.PARTNER_DISCONNECT
    assert runner.assignments == {}


def test_resumed_waiting_agents_wait_for_a_partner_again() -> None:
    clock, run = Clock(), Recorder()
    runner = LiveTaskRunner(clock, run, inline_runner)
    alice = resumed(clock, "a", Status.WAITING)
    runner.resume([alice], "as-1", 2, {})
    assert run.calls == [] and alice.status == Status.WAITING
    bob, _ = make_agent(clock, "b")
    runner.join(bob, "as-1", 2, {})
    ((assignment, agents),) = run.calls
    assert agents == [alice, bob] and not assignment.resumed
    assert (alice.status, bob.status) == (Status.IN_TASK, Status.IN_TASK)


def test_procedures_answer_values_and_errors() -> None:
    clock = Clock()
    pending: Deferred[int] = Deferred()

    def add(agent: Agent, args: dict[str, int]) -> int:
        return args["a"] + args["b"]

    async def later(agent: Agent, args: Any) -> int:
        return await pending

    def broken(agent: Agent, args: Any) -> None:
        raise ValueError("no good")

    dispatcher = ProcedureDispatcher(
        {"add": add, "later": later, "broken": broken, "weird": lambda agent, args: {1, 2}},
        inline_runner,
    )
    agent, sent = make_agent(clock, "a")
    dispatcher.attach(agent)
    calls = [
        ("r1", "add", json.dumps({"a": 2, "b": 3})),
        ("r2", "missing", "{}"),
        ("r3", "broken", "{}"),
        ("r4", "add", "{not json"),
        ("r5", "weird", "null"),
        ("r6", "later", "null"),
    ]
    for request_id, target, args in calls:
        agent.receive_live_update({"request_id": request_id, "target": target, "args": args})
    answers = rpc_answers(sent)
    assert json.loads(answers["r1"]["response"]) == 5 and "error" not in answers["r1"]
    assert "unknown procedure 'missing'" in answers["r2"]["error"]
    assert "no good" in answers["r3"]["error"]
    assert "not JSON" in answers["r4"]["error"]
    assert "not JSON" in answers["r5"]["error"]
    # mephisto-task pages parse `response`: errors are readable there too.
    assert json.loads(answers["r2"]["response"]) == {"error": answers["r2"]["error"]}
    assert "r6" not in answers
    pending.callback(99)
    assert json.loads(rpc_answers(sent)["r6"]["response"]) == 99


@pytest.mark.parametrize(
    "args", ["[" * 100_000 + "]" * 100_000, "NaN", '{"a": 1e999}', '"\\ud800"'], ids=str.__len__
)
def test_arguments_a_browser_nests_too_deep_or_that_are_not_strict_json_are_answered(
    args: str,
) -> None:
    """Found by fuzzing: nesting past the recursion limit was a RecursionError out of the
    live update's handling (a traceback), and no answer."""
    dispatcher = ProcedureDispatcher({"echo": lambda agent, args: args}, inline_runner)
    agent, sent = make_agent(Clock(), "a")
    dispatcher.attach(agent)
    agent.receive_live_update({"request_id": "r1", "target": "echo", "args": args})
    assert "are not JSON" in rpc_answers(sent)["r1"]["error"]


def test_live_task_with_procedures_routes_calls_and_messages_apart() -> None:
    clock = Clock()
    heard: list[Any] = []

    async def listen(assignment: Assignment, agents: list[Agent]) -> None:
        heard.append(await agents[0].act(timeout=10))

    dispatcher = ProcedureDispatcher({"double": lambda agent, args: args * 2}, inline_runner)
    runner = LiveTaskRunner(clock, listen, inline_runner)
    alice, sent = make_agent(clock, "a")
    dispatcher.attach_beside_act(alice)
    runner.join(alice, "as-1", 1, {})
    alice.receive_live_update({"request_id": "r1", "target": "double", "args": "21"})
    assert heard == []
    alice.receive_live_update({"update_id": "u1", "text": "a chat line"})
    assert heard == [{"update_id": "u1", "text": "a chat line"}]
    assert json.loads(rpc_answers(sent)["r1"]["response"]) == 42
