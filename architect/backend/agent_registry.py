"""AgentRegistry: the agents this backend process holds, by id and by registration id,
and the workers they belong to. Every agent is made here, so each one is recorded."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from twisted.internet.interfaces import IReactorTime

from architect.backend.recorder import AgentRecorder
from architect.storage import Worker
from architect.tasks.agent import Agent
from architect.tasks.history import LiveLimits


def new_agent_id(prefix: str = "") -> str:
    """An unguessable agent id."""
    return prefix + uuid.uuid4().hex


class AgentRegistry:
    def __init__(
        self, clock: IReactorTime, recorder: AgentRecorder, live_limits: LiveLimits | None = None
    ) -> None:
        self.clock = clock
        self.recorder = recorder
        self.live_limits = live_limits or LiveLimits()  # [backend] bounds on live updates
        self.agents: dict[str, Agent] = {}  # the agents of this process, by id
        self.registrations: dict[str, Agent] = {}  # agent_registration_id -> latest agent
        self.workers: dict[str, Worker] = {}  # by worker id (as on the wire)

    def get(self, agent_id: str) -> Agent | None:
        return self.agents.get(agent_id)

    def by_registration(self, registration_id: str) -> Agent | None:
        return self.registrations.get(registration_id)

    def remember_worker(self, worker: Worker) -> None:
        self.workers[str(worker.id)] = worker

    def worker(self, worker_id: str) -> Worker | None:
        return self.workers.get(worker_id)

    def new_agent(
        self,
        agent_id: str,
        worker: Worker,
        init_task_data: dict[str, Any],
        registration_id: str | None,
        status: str,
        kind: str,
    ) -> Agent:
        """An agent in `status`, recorded from then on (its status is pushed once it has an
        outlet)."""
        agent = Agent(
            self.clock,
            agent_id,
            str(worker.id),
            copy.deepcopy(init_task_data),
            registration_id=registration_id,
            kind=kind,
            live_limits=self.live_limits,
        )
        agent.set_status(status)
        self.recorder.watch(agent)
        self.agents[agent_id] = agent
        if registration_id is not None:
            self.registrations[registration_id] = agent
        return agent
