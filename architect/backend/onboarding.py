"""Onboarding: a worker without the task's onboarding qualification first gets an
onboarding agent with the task's `onboarding_data(worker)`; its submission goes
through `validate_onboarding(worker, data)`, which grants the qualification as
passed (1) or failed (0). The registration pipeline decides when to onboard and
what follows a pass.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from architect.backend.agent_registry import AgentRegistry, new_agent_id
from architect.backend.registration import Registration
from architect.copies import json_copy
from architect.lifecycle import AgentKind
from architect.protocol import FailureReason, Status
from architect.storage import Database, Worker
from architect.tasks.agent import Agent
from architect.tasks.definition import TaskDefinition, WorkerInfo
from architect.tasks.hooks import BlockingRunner, call_hook

log = Logger()

# Qualification values granted by onboarding.
PASSED, FAILED = 1, 0


class Onboarding:
    def __init__(
        self,
        database: Database,
        registry: AgentRegistry,
        task: TaskDefinition,
        run_blocking: BlockingRunner,
        qualification: str,
    ) -> None:
        self.database = database
        self.registry = registry
        self.task = task
        self.run_blocking = run_blocking
        self.qualification = qualification  # [task] onboarding_qualification

    @staticmethod
    def is_open(agent: Agent) -> bool:
        """An onboarding agent still waiting for its submission."""
        return agent.is_onboarding and agent.status == Status.ONBOARDING

    async def start(
        self, task_run_id: int, worker: Worker, info: WorkerInfo, registration_id: str | None
    ) -> Registration:
        """An onboarding agent for the worker, or a refusal if the task's hook failed."""
        worker_id = str(worker.id)
        data: Any = {}
        if self.task.onboarding_data is not None:
            try:
                data = await call_hook(self.run_blocking, self.task.onboarding_data, info)
                if not isinstance(data, dict):
                    kind = type(data).__name__
                    raise TypeError(f"onboarding_data must return a dict, not {kind}")
            except Exception:
                log.failure(
                    "onboarding_data failed for worker {name} ({worker_id})",
                    name=worker.worker_name,
                    worker_id=worker_id,
                )
                return Registration.refused(worker_id, FailureReason.NO_WORK)
        agent_id = new_agent_id("onboarding-")
        await self.database.create_onboarding_agent(
            task_run_id, worker.id, agent_id, registration_id, status=Status.ONBOARDING
        )
        agent = self.registry.new_agent(
            agent_id, worker, data, registration_id, Status.ONBOARDING, AgentKind.ONBOARDING
        )
        self.registry.recorder.record_init_data(agent)
        return Registration(worker_id, agent, json_copy(data))

    async def judge(
        self, agent: Agent, worker: Worker, info: WorkerInfo, data: dict[str, Any]
    ) -> Registration | None:
        """Grant the qualification by the task's verdict: None if passed, else the refusal."""
        try:
            passed = await self._validate(info, data)
        except Exception:
            log.failure(
                "validate_onboarding failed for worker {name} ({worker_id}), agent {agent_id}",
                name=worker.worker_name,
                worker_id=agent.worker_id,
                agent_id=agent.agent_id,
            )
            agent.set_status(Status.EXPIRED)
            return Registration.refused(agent.worker_id, FailureReason.NO_WORK)
        await self.database.grant_qualification(
            worker.id, self.qualification, PASSED if passed else FAILED
        )
        if not passed:
            agent.set_status(Status.REJECTED)
            return Registration.refused(agent.worker_id, FailureReason.NOT_QUALIFIED)
        agent.set_status(Status.APPROVED)
        return None

    async def _validate(self, info: WorkerInfo, data: dict[str, Any]) -> bool:
        hook = self.task.validate_onboarding
        if hook is None:
            return True
        return bool(await call_hook(self.run_blocking, hook, info, json_copy(data)))
