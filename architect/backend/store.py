"""Where submissions go. An in-memory store for now; the database comes with the storage issue.

Every method returns a Deferred so a store backed by a database (adbapi) fits
the same interface.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, succeed


class SubmissionStore(Protocol):
    def save_unit_submission(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any]
    ) -> Deferred[None]: ...

    def save_metadata(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any]
    ) -> Deferred[None]: ...


@attrs.frozen
class StoredSubmission:
    kind: str  # "unit" or "metadata"
    agent_id: str
    worker_id: str | None
    data: dict[str, Any]


class MemoryStore:
    """Keeps submissions in a list, in arrival order."""

    def __init__(self) -> None:
        self.submissions: list[StoredSubmission] = []

    def save_unit_submission(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any]
    ) -> Deferred[None]:
        self.submissions.append(StoredSubmission("unit", agent_id, worker_id, copy.deepcopy(data)))
        return succeed(None)

    def save_metadata(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any]
    ) -> Deferred[None]:
        self.submissions.append(
            StoredSubmission("metadata", agent_id, worker_id, copy.deepcopy(data))
        )
        return succeed(None)

    def of_agent(self, agent_id: str, kind: str | None = None) -> list[StoredSubmission]:
        return [
            s
            for s in self.submissions
            if s.agent_id == agent_id and (kind is None or s.kind == kind)
        ]
