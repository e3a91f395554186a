"""What the ClientIOHandler asks of a worker pool, and the answers it gets.

`WorkerPool` is the interface (`workers.StoredWorkerPool` is the one over the
database); every decision comes back as a Deferred of a `Registration`.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

from architect.tasks.agent import Agent


@attrs.define
class Registration:
    """The pool's answer to a registration or an onboarding submission."""

    worker_id: str | None
    agent: Agent | None
    init_task_data: dict[str, Any] | None = None
    failure_reason: str | None = None
    reconnected: bool = False  # the same agent as before (a page reload)

    @classmethod
    def refused(cls, worker_id: str | None, reason: str) -> Registration:
        return cls(worker_id=worker_id, agent=None, failure_reason=reason)


class BadRegistration(ValueError):
    """provider_data the pool cannot work with."""


class WorkerPool(Protocol):
    def register(self, provider_data: dict[str, Any]) -> Deferred[Registration]:
        """A browser asks for work: a new agent, the same agent again, or a failure reason."""
        ...

    def submit_onboarding(
        self, agent: Agent, onboarding_data: dict[str, Any]
    ) -> Deferred[Registration]:
        """An onboarding agent submitted: a unit agent, or a failure reason."""
        ...

    def get_agent(self, agent_id: str) -> Agent | None:
        """A live agent by id (onboarding agents included)."""
        ...
