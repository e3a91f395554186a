"""What the ClientIOHandler asks of a worker pool, and the answers it gets.

`WorkerPool` is the interface (`workers.StoredWorkerPool` is the one over the
database); every decision comes back as a Deferred of a `Registration`. The pool holds
the agents at work; a finished one is a `FinishedAgent`, read from its storage.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

from architect.protocol import FailureReason
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


@attrs.frozen
class FinishedAgent:
    """An agent of the task run that finished: no longer held, as the database keeps it."""

    agent_id: str
    worker_id: str
    status: str  # final (lifecycle.FINAL)
    timed_out: bool = False  # expired: not submitted within [task] assignment_duration


class BadRegistration(ValueError):
    """provider_data the pool cannot work with."""


# A worker's name and provider as the backend keeps them. Crowd platforms' ids fit
# (MTurk's, Prolific's, emails); a first letter or digit also keeps a name from being
# read as a formula where the results are opened as a spreadsheet.
WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,99}")
PROVIDER_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def worker_identity_problem(worker_name: str, provider_type: str) -> str | None:
    """Why the backend will not take this worker (a failure reason), or None."""
    if WORKER_NAME.fullmatch(worker_name) and PROVIDER_TYPE.fullmatch(provider_type):
        return None
    return FailureReason.BAD_WORKER_ID


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
        """An agent at work by id (onboarding agents included); None once it is final."""
        ...

    def finished_agent(self, agent_id: str) -> Deferred[FinishedAgent | None]:
        """An agent of this run that is final, as stored; None if the run has no such agent
        (another run's, a stranger, or one at work)."""
        ...

    def recently_finished(self) -> Deferred[dict[str, str]]:
        """This run's agents that finished lately (resume.finished_lately): id -> status."""
        ...

    def stop(self) -> None:
        """The backend stops serving: the pool's timers end."""
        ...
