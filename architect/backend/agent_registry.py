"""AgentRegistry: the agents this backend process holds, by id and by registration id.
Every agent is made here, so each one is recorded.

Each agent at work is watched by the expiry (`[task] assignment_duration`) from its
creation, or from its creation as stored for one a restarted daemon takes back.

Only agents at work are held: one whose status becomes final (`lifecycle.FINAL`: done,
gone, or its onboarding decided) is dropped at once, and the database answers for it
from then on (a reload with its registration id, a late packet about it).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from architect.backend.expiry import AgentExpiry
from architect.backend.recorder import AgentRecorder
from architect.copies import json_copy
from architect.lifecycle import FINAL
from architect.random_ids import random_hex
from architect.storage import Worker
from architect.tasks.agent import Agent
from architect.tasks.history import LiveLimits


def new_agent_id(prefix: str = "") -> str:
    """An unguessable agent id."""
    return prefix + random_hex()


class AgentRegistry:
    def __init__(
        self,
        clock: IReactorTime,
        recorder: AgentRecorder,
        live_limits: LiveLimits | None = None,
        expiry: AgentExpiry | None = None,
    ) -> None:
        self.clock = clock
        self.recorder = recorder
        self.live_limits = live_limits or LiveLimits()  # [backend] bounds on live updates
        self.expiry = expiry  # None: agents never expire (tests of other things)
        self.agents: dict[str, Agent] = {}  # the agents at work, by id
        self.registrations: dict[str, Agent] = {}  # agent_registration_id -> latest agent

    def get(self, agent_id: str) -> Agent | None:
        return self.agents.get(agent_id)

    def by_registration(self, registration_id: str) -> Agent | None:
        return self.registrations.get(registration_id)

    def new_agent(
        self,
        agent_id: str,
        worker: Worker,
        init_task_data: dict[str, Any],
        registration_id: str | None,
        status: str,
        kind: str,
        created_at: float | None = None,
    ) -> Agent:
        """An agent in `status`, recorded from then on (its status is pushed once it has an
        outlet), and held until it is final; it expires `assignment_duration` seconds after
        `created_at` (an earlier life's time, as stored; default: now)."""
        agent = Agent(
            self.clock,
            agent_id,
            str(worker.id),
            json_copy(init_task_data),
            registration_id=registration_id,
            kind=kind,
            live_limits=self.live_limits,
        )
        agent.set_status(status)
        # The recorder listens first: an agent's final status is on its way to the database
        # (whose one thread runs the writes and reads in order) before the agent is dropped.
        self.recorder.watch(agent)
        agent.add_status_listener(self._status_changed)
        if agent.is_active:
            self.agents[agent_id] = agent
            if registration_id is not None:
                self.registrations[registration_id] = agent
            if self.expiry is not None:
                self.expiry.watch(agent, created_at)
        return agent

    def _status_changed(self, agent: Agent, old: str, new: str) -> None:
        if new in FINAL:
            self.forget(agent)

    def forget(self, agent: Agent) -> None:
        """Drop a finished agent (a newer agent of its registration id stays)."""
        if self.agents.get(agent.agent_id) is agent:
            del self.agents[agent.agent_id]
        registration_id = agent.registration_id
        if registration_id is not None and self.registrations.get(registration_id) is agent:
            del self.registrations[registration_id]
