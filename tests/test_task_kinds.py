"""Each kind of task through the real router, the in-process backend and the SQLite database.

Simulated workers: HTTP through treq, live sockets through Autobahn. Task modules are
written as files into the test's folder and named in `[task] module`, as a researcher would.
"""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred

from architect.protocol import (
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    MEPHISTO_BOUND_LIVE_UPDATE,
    UPDATE_STATUS,
    Status,
)
from tests.clients import Browsers, PacketClient, wait_for
from tests.daemon import Daemon, daemon_config, running

# Shared with the task module's hook, which runs in a worker thread.
RELEASE_SLOW_HOOK = threading.Event()
SLOW_HOOK_ENTERED = threading.Event()


class Running:
    """Simulated workers of one running daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.port = daemon.port
        self.browsers = Browsers()

    async def register(self, worker: str, assignment: str = "a1") -> dict[str, Any]:
        provider = {
            "worker_name": worker,
            "agent_registration_id": f"{assignment}-{worker}",
            "assignment_id": assignment,
            "provider_type": "mock",
        }
        browser = self.browsers.of_worker(worker)
        response = await browser.http.post(
            f"http://127.0.0.1:{self.port}/request_agent",
            data=json.dumps({"provider_data": provider}).encode(),
        )
        assert response.code == 200
        answer: dict[str, Any] = json.loads(await response.text())["data"]
        self.browsers.registered(answer, browser)
        return answer

    async def submit(self, agent_id: str, data: dict[str, Any]) -> None:
        response = await self.browsers.of_agent(agent_id).http.post(
            f"http://127.0.0.1:{self.port}/submit_task",
            data=json.dumps({"USED_AGENT_ID": agent_id, "final_data": data}).encode(),
        )
        assert response.code == 200

    async def live(self, agent_id: str) -> PacketClient:
        socket = await self.browsers.of_agent(agent_id).open_socket(self.port)
        socket.send(ALIVE, agent_id)
        socket.send(HEARTBEAT, agent_id)
        return socket

    async def status_of(self, agent_id: str) -> str:
        return await self.daemon.status(agent_id)

    async def has_status(self, status: str, *agent_ids: str) -> bool:
        """Whether every one of the agents has `status` (for wait_for)."""
        return all([await self.status_of(agent_id) == status for agent_id in agent_ids])


async def next_status(socket: PacketClient, wanted: str) -> None:
    while True:
        packet = await socket.next(UPDATE_STATUS)
        if packet.data["status"] == wanted:
            return


@asynccontextmanager
async def task_service(
    tmp_path: Path, module_source: str, units: list[dict[str, Any]], **task: Any
) -> AsyncIterator[Running]:
    module = tmp_path / "my_task.py"
    module.write_text(textwrap.dedent(module_source))
    config = daemon_config(
        tmp_path,
        router={"disconnect_grace": 0.2},
        backend={"status_interval": 0.1},
        task={"name": "kinds", "module": str(module), "units": tuple(units), **task},
    )
    async with running(config) as daemon:
        yield Running(daemon)


# --- static ---

STATIC_TASK = """
    import threading

    from tests.test_task_kinds import RELEASE_SLOW_HOOK, SLOW_HOOK_ENTERED

    def init_data(unit):
        if unit.assignment_data.get("slow"):
            SLOW_HOOK_ENTERED.set()
            RELEASE_SLOW_HOOK.wait(10)  # a hook that blocks, in its worker thread
        return {"question": unit.assignment_data["text"].upper(), "index": unit.assignment_index}

    def validate_submission(agent, data):
        return data.get("answer") != "nonsense"
"""


@pytest_twisted.ensureDeferred
async def test_static_task_hooks_and_validation(tmp_path: Path) -> None:
    units = [{"text": "first"}, {"text": "second"}]
    async with task_service(tmp_path, STATIC_TASK, units) as running:
        alice = await running.register("alice")
        assert alice["init_task_data"] == {"question": "FIRST", "index": 0}
        bob = await running.register("bob")
        assert bob["init_task_data"]["question"] == "SECOND"
        await running.submit(alice["agent_id"], {"answer": "42"})
        await running.submit(bob["agent_id"], {"answer": "nonsense"})
        await wait_for(lambda: running.has_status(Status.SOFT_REJECTED, bob["agent_id"]))
        assert await running.status_of(alice["agent_id"]) == Status.COMPLETED
        stored = await running.daemon.database.list_submissions(kind="unit")
        assert sorted(s.data["answer"] for s in stored) == ["42", "nonsense"]


@pytest_twisted.ensureDeferred
async def test_blocking_hook_does_not_stall_other_workers(tmp_path: Path) -> None:
    RELEASE_SLOW_HOOK.clear()
    SLOW_HOOK_ENTERED.clear()
    units: list[dict[str, Any]] = [{"text": "slow one", "slow": True}, {"text": "quick one"}]
    async with task_service(tmp_path, STATIC_TASK, units) as running:
        slow: Deferred[dict[str, Any]] = ensureDeferred(running.register("slowpoke"))
        await wait_for(SLOW_HOOK_ENTERED.is_set)  # the slow unit is reserved; its hook blocks
        quick = await running.register("quick")  # served while the slow hook blocks
        assert quick["init_task_data"]["question"] == "QUICK ONE"
        assert not slow.called
        RELEASE_SLOW_HOOK.set()
        answer = await slow
        assert answer["init_task_data"]["question"] == "SLOW ONE"


# --- live ---

CHAT_TASK = """
    async def run_assignment(assignment, agents):
        first, second = agents
        for agent in agents:
            agent.observe({"text": f"welcome to {assignment.data['room']}"})
        message = await first.act(timeout=30)
        second.observe({"text": "partner says " + message["text"]})
"""


@pytest_twisted.ensureDeferred
async def test_live_chat_waiting_room_messages_and_partner_disconnect(tmp_path: Path) -> None:
    async with task_service(
        tmp_path, CHAT_TASK, [{"room": "lobby"}], units_per_assignment=2
    ) as running:
        alice = await running.register("alice")
        alice_socket = await running.live(alice["agent_id"])
        await next_status(alice_socket, Status.WAITING)
        bob = await running.register("bob")
        bob_socket = await running.live(bob["agent_id"])
        await next_status(alice_socket, Status.IN_TASK)
        await next_status(bob_socket, Status.IN_TASK)
        welcome = await alice_socket.next(CLIENT_BOUND_LIVE_UPDATE)
        assert welcome.data["text"] == "welcome to lobby"
        await bob_socket.next(CLIENT_BOUND_LIVE_UPDATE)
        alice_socket.send(
            MEPHISTO_BOUND_LIVE_UPDATE, alice["agent_id"], {"update_id": "m1", "text": "hi"}
        )
        relayed = await bob_socket.next(CLIENT_BOUND_LIVE_UPDATE)
        assert relayed.data["text"] == "partner says hi"

        await alice_socket.close()
        # The router marks alice disconnect after the grace period; the backend learns it
        # through return_statuses and tells bob.
        await next_status(bob_socket, Status.PARTNER_DISCONNECT)
        assert await running.status_of(alice["agent_id"]) == Status.DISCONNECT


TIMED_TASK = """
    async def run_assignment(assignment, agents):
        agents[0].observe({"text": "you have half a second"})
"""


@pytest_twisted.ensureDeferred
async def test_live_task_timeout(tmp_path: Path) -> None:
    async with task_service(tmp_path, TIMED_TASK, [{"n": 1}], timeout=0.5) as running:
        alice = await running.register("alice")
        socket = await running.live(alice["agent_id"])
        await next_status(socket, Status.TIMEOUT)
        assert await running.status_of(alice["agent_id"]) == Status.TIMEOUT


# --- remote procedures ---

RPC_TASK = """
    import time

    def add(agent, args):
        time.sleep(0.05)  # plain functions run in a thread
        return {"sum": args["a"] + args["b"]}

    async def fail(agent, args):
        raise ValueError("cannot do that")

    PROCEDURES = {"add": add, "fail": fail}
"""


@pytest_twisted.ensureDeferred
async def test_remote_procedures_answer_values_and_errors(tmp_path: Path) -> None:
    async with task_service(tmp_path, RPC_TASK, [{"n": 1}]) as running:
        alice = await running.register("alice")
        socket = await running.live(alice["agent_id"])
        calls = {
            "r1": ("add", json.dumps({"a": 2, "b": 40})),
            "r2": ("fail", "{}"),
            "r3": ("nope", "{}"),
        }
        for request_id, (target, args) in calls.items():
            socket.send(
                MEPHISTO_BOUND_LIVE_UPDATE,
                alice["agent_id"],
                {"update_id": request_id, "request_id": request_id, "target": target, "args": args},
            )
        answers: dict[str, dict[str, Any]] = {}
        while len(answers) < 3:
            packet = await socket.next(CLIENT_BOUND_LIVE_UPDATE)
            answers[packet.data["handles"]] = packet.data
        assert json.loads(answers["r1"]["response"]) == {"sum": 42}
        assert "cannot do that" in answers["r2"]["error"]
        assert "unknown procedure 'nope'" in answers["r3"]["error"]
