"""The real backend without a daemon: a SQLite file, the stored pool, the task runner and the
ClientIOHandler, wired as tap.py wires them, with a fake router channel and a task.Clock for
the agents' timers. Packets go in as a router would send them; the database calls are real
(its thread), so tests using it run on the reactor (pytest-twisted)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.task import Clock

from architect.backend.client_io import ClientIOHandler
from architect.backend.files import UploadedFiles
from architect.backend.store import StoredSubmissions
from architect.backend.workers import StoredWorkerPool, prepare_task_run
from architect.config import TaskConfig
from architect.protocol import (
    AGENT_DETAILS,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    RETURN_STATUSES,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
)
from architect.storage import Database
from architect.tasks.agent import Agent
from architect.tasks.definition import TaskDefinition
from architect.tasks.hooks import inline_runner
from architect.tasks.runner import TaskRunner
from tests.backend_fakes import FakeChannel


class BackendStack:
    """One backend over `database`, serving one task run."""

    def __init__(
        self,
        database: Database,
        pool: StoredWorkerPool,
        runner: TaskRunner,
        handler: ClientIOHandler,
        clock: Clock,
    ) -> None:
        self.database = database
        self.pool = pool
        self.runner = runner
        self.handler = handler
        self.clock = clock
        self.channel = FakeChannel("router")
        handler.add_channel(self.channel)
        self._requests = 0

    @classmethod
    async def make(
        cls,
        database: Database,
        units: Sequence[dict[str, Any]],
        task: TaskDefinition | None = None,
        name: str = "run-1",
        clock: Clock | None = None,
        files: UploadedFiles | None = None,
        **settings: Any,
    ) -> BackendStack:
        """`clock`: the agents' timers' (give the database's, to compare its times with them);
        `files`: where submissions' uploads are fetched from (none by default)."""
        task = task or TaskDefinition()
        config = TaskConfig(name=name, units=tuple(units), **settings)
        run = await prepare_task_run(database, config, units)
        clock = clock or Clock()
        runner = TaskRunner(clock, task, inline_runner, config.units_per_assignment)
        pool = StoredWorkerPool(
            clock, database, run, config, task, inline_runner, runner.agent_assigned
        )
        handler = ClientIOHandler(
            clock,
            pool,
            StoredSubmissions(database, files),
            on_unit_submitted=runner.unit_submitted,
        )
        return cls(database, pool, runner, handler, clock)

    # --- the router's side ---

    async def register(self, worker: str, registration_id: str | None = None) -> dict[str, Any]:
        """register_agent for `worker`; the data of its agent_details answer."""
        self._requests += 1
        request_id = f"request-{self._requests}"
        provider: dict[str, Any] = {"worker_name": worker, "provider_type": "mock"}
        if registration_id is not None:
            provider["agent_registration_id"] = registration_id
        await self.channel.receive(
            REGISTER_AGENT, request_id, {"provider_data": provider, "request_id": request_id}
        )
        return self.answer_to(request_id)

    async def onboard(self, agent_id: str, answer: str) -> dict[str, Any]:
        """submit_onboarding for `agent_id`; the data of its agent_details answer."""
        self._requests += 1
        request_id = f"request-{self._requests}"
        await self.channel.receive(
            SUBMIT_ONBOARDING,
            agent_id,
            {"onboarding_data": {"answer": answer}, "request_id": request_id},
        )
        return self.answer_to(request_id)

    async def submit(self, agent_id: str, data: dict[str, Any]) -> None:
        await self.channel.receive(SUBMIT_UNIT, agent_id, data)
        await self.settled()

    async def live_update(self, agent_id: str, data: dict[str, Any]) -> None:
        await self.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, data)
        await self.settled()

    async def router_statuses(self, statuses: dict[str, str]) -> None:
        await self.channel.receive(RETURN_STATUSES, MEPHISTO, statuses)
        await self.settled()

    async def settled(self) -> None:
        await self.pool.settled()

    def answer_to(self, request_id: str) -> dict[str, Any]:
        [answer] = [p for p in self.channel.of_type(AGENT_DETAILS) if p.subject_id == request_id]
        data: dict[str, Any] = answer.data
        return data

    def statuses_sent(self, agent_id: str) -> list[str]:
        return [
            p.data["status"]
            for p in self.channel.of_type(UPDATE_STATUS)
            if p.subject_id == agent_id
        ]

    def held(self, agent_id: str) -> Agent:
        agent = self.pool.get_agent(agent_id)
        assert agent is not None, f"the backend holds no agent {agent_id}"
        return agent

    # --- what the backend keeps in memory ---

    def sizes(self) -> dict[str, int]:
        """The size of every structure the backend keeps per agent."""
        live = self.runner.live
        return {
            **self.per_agent_sizes(),
            "live.agents": len(live._of_agent) if live is not None else 0,
            "live.assignments": len(live.assignments) if live is not None else 0,
            "handler.submitting": len(self.handler.finished.submitting),
            "resumption.unclaimed": len(self.handler.resumption.unclaimed),
            "pool.locks": len(self.pool.locks),
            "recorder.writes": len(self.pool.recorder._writes),
        }

    def per_agent_sizes(self) -> dict[str, int]:
        """The sizes of the structures holding one entry per agent at work (the others are
        empty once nothing is in flight)."""
        registry = self.pool.registry
        return {
            "registry.agents": len(registry.agents),
            "registry.registrations": len(registry.registrations),
            "routes.channels": len(self.handler.routes.channels),
            "runner.units": len(self.runner.units),
            "expiry.timers": len(self.pool.expiry),
        }
