"""What the rest of Architect may ask of a database, and the records it gets back.

The registration pipeline, the backend and the `architect` command speak only
to `Database`; `SQLiteDatabase` is the embedded implementation, and a
PostgreSQL one can follow without touching them. `Database` is the sum of five
parts (`RunsAndUnits`, `WorkersAndQualifications`, `AgentRecords`,
`SubmissionsAndLiveUpdates`, `RunRecord`), which an engine can implement one at a time.

Every method returns a Deferred. A write's Deferred fires only after the
write is committed, so whatever is acknowledged on the strength of it
survives a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

from architect.connection_events import ConnectionEvent, EventRepeats
from architect.protocol import Status


class SubmissionKind:
    UNIT = "unit"
    ONBOARDING = "onboarding"
    METADATA = "metadata"

    ALL = frozenset({UNIT, ONBOARDING, METADATA})


class Direction:
    """Which way a live update travelled, in the protocol's own words."""

    MEPHISTO_BOUND = "mephisto_bound"  # from the worker's browser to the backend
    CLIENT_BOUND = "client_bound"  # from the backend to the worker's browser

    ALL = frozenset({MEPHISTO_BOUND, CLIENT_BOUND})


class StorageError(Exception):
    """A database problem, as one line a user can act on."""


class SchemaError(StorageError):
    """The database's schema version cannot be brought to the one this code needs."""


class NoSuchAgent(StorageError, LookupError):
    """No agent has this id."""


@attrs.frozen
class TaskRun:
    id: int
    name: str
    config: dict[str, Any]
    created_at: float


@attrs.frozen
class Unit:
    id: int
    task_run_id: int
    assignment_id: int
    assignment_index: int
    unit_index: int
    assignment_data: Any
    status: str
    agent_id: str | None


@attrs.frozen
class CandidateUnit:
    """An available unit as a registration's page holds it: its data still JSON text, so
    that only the units a task hook is asked about are decoded."""

    id: int
    assignment_id: int
    assignment_index: int
    unit_index: int
    data_json: str

    def assignment_data(self) -> Any:
        """The unit's assignment data, decoded afresh at each call (a copy of its own)."""
        return json.loads(self.data_json)


@attrs.frozen
class Worker:
    id: int
    provider_type: str
    worker_name: str
    created_at: float


@attrs.frozen
class GrantedQualification:
    name: str
    value: Any
    granted_at: float


@attrs.frozen
class StoredAgent:
    """An agent as the database keeps it; the live one is architect.backend.agents.Agent."""

    agent_id: str
    kind: str
    task_run_id: int
    worker_id: int
    unit_id: int | None
    agent_registration_id: str | None
    status: str
    created_at: float
    updated_at: float


@attrs.frozen
class StatusChange:
    status: str
    changed_at: float


@attrs.frozen
class SubmissionFile:
    """An uploaded file kept beside the database; stored_path is relative to the data folder."""

    original_name: str
    stored_path: str
    size: int
    mimetype: str


@attrs.frozen
class Submission:
    id: int
    agent_id: str
    kind: str
    data: Any
    dedupe_key: str | None
    received_at: float
    files: tuple[SubmissionFile, ...] = ()


@attrs.frozen
class LiveUpdate:
    agent_id: str
    direction: str
    update_id: str | None
    data: Any
    created_at: float


@attrs.frozen
class ResumableAgent:
    """An agent still active when the daemon stopped, with what it takes to carry it on."""

    agent: StoredAgent
    worker: Worker
    unit: Unit | None  # None for an onboarding agent
    init_task_data: Any  # None when never recorded (an agent from schema v1)
    live_updates: tuple[LiveUpdate, ...]  # both directions, in arrival order


@attrs.frozen
class WorkedOn:
    """The assignments and units a worker has had a unit agent for in a run, whatever its end."""

    assignment_ids: frozenset[int]
    unit_ids: frozenset[int]


@attrs.frozen
class WorkRequest:
    """A registration's whole common path, for one transaction (AgentRecords.register_for_work).

    In the pipeline's order: the worker found or made; an agent of the run already under
    this registration id stops there (known_registration: the caller decides); then
    `qualified(held)` over the worker's qualification values; then the limits (0: none);
    then the first available unit, in order, of an assignment the worker has had no unit
    of, reserved for a new agent as reserve_unit does.
    """

    task_run_id: int
    provider_type: str
    worker_name: str
    agent_id: str
    agent_registration_id: str | None
    look_up_registration: bool  # False: the caller has been through the known agent
    qualified: Callable[[Mapping[str, Any]], bool]  # runs in the database thread: pure
    allowed_concurrent: int
    maximum_units_per_worker: int
    status: str = Status.NONE
    init_from_assignment: bool = False


@attrs.frozen
class WorkAnswer:
    """What register_for_work found: a unit, or why not (a protocol FailureReason)."""

    worker: Worker
    unit: Unit | None = None
    failure_reason: str | None = None
    known_registration: bool = False


class RunsAndUnits(Protocol):
    """Task runs, their assignments, and the units agents work on."""

    def find_or_create_task_run(self, name: str, config: Mapping[str, Any]) -> Deferred[TaskRun]:
        """The run with this name (kept with its first config), or a new one."""
        ...

    def get_task_run(self, name: str) -> Deferred[TaskRun | None]:
        """The run with this name, if there is one (nothing is created)."""
        ...

    def list_task_runs(self) -> Deferred[list[TaskRun]]: ...

    def add_assignments(
        self, task_run_id: int, assignments: Sequence[Any], units_per_assignment: int = 1
    ) -> Deferred[int]:
        """Store assignment i with its units unless index i exists; the number added."""
        ...

    def append_assignments(
        self, task_run_id: int, assignments: Sequence[Any], units_per_assignment: int = 1
    ) -> Deferred[int]:
        """Store the assignments with their units after the run's last one (indices from
        one past the highest stored); the index of the first one added."""
        ...

    def get_unit(self, unit_id: int) -> Deferred[Unit | None]: ...

    def list_units(self, task_run_id: int, status: str | None = None) -> Deferred[list[Unit]]:
        """The run's units in assignment then unit order, optionally only those in status."""
        ...

    def available_units(
        self,
        task_run_id: int,
        excluded_assignment_ids: Collection[int] = (),
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> Deferred[list[Unit]]:
        """Up to `limit` available units, in order, past (assignment_index, unit_index) `after`,
        leaving out the given assignments: one page of candidates for a registration."""
        ...

    def available_candidates(
        self,
        task_run_id: int,
        excluded_assignment_ids: Collection[int] = (),
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> Deferred[list[CandidateUnit]]:
        """available_units' page, its data left undecoded."""
        ...

    def count_units_by_status(self, task_run_id: int) -> Deferred[dict[str, int]]: ...


class WorkersAndQualifications(Protocol):
    """Workers, found by provider and name, and the qualifications granted to them."""

    def find_or_create_worker(self, provider_type: str, worker_name: str) -> Deferred[Worker]: ...

    def get_worker(self, worker_id: int) -> Deferred[Worker | None]: ...

    def list_workers(self) -> Deferred[list[Worker]]: ...

    def grant_qualification(self, worker_id: int, name: str, value: Any) -> Deferred[None]:
        """Set (or replace) the worker's value for the qualification, now."""
        ...

    def revoke_qualification(self, worker_id: int, name: str) -> Deferred[bool]:
        """Remove the worker's value; False if there was none."""
        ...

    def get_qualifications(self, worker_id: int) -> Deferred[dict[str, GrantedQualification]]: ...


class AgentRecords(Protocol):
    """Agents, their status history, the counts the limits read, and what a restart resumes."""

    def reserve_unit(
        self,
        task_run_id: int,
        worker_id: int,
        agent_id: str,
        candidate_unit_ids: Iterable[int],
        agent_registration_id: str | None = None,
        status: str = Status.NONE,
        init_from_assignment: bool = False,
    ) -> Deferred[Unit | None]:
        """Atomically take the first still-available candidate for a new unit agent.

        None (and no agent created) if every candidate is taken. With
        init_from_assignment, the agent's task data is recorded as its unit's
        assignment data in the same transaction (no set_agent_init_data needed).
        """
        ...

    def register_for_work(self, request: WorkRequest) -> Deferred[WorkAnswer]:
        """The checks and the reservation of a registration without hooks, in one transaction.

        Only the reserved unit's data is decoded. A refusal (not qualified, too many
        concurrent, max units, no work) still keeps the worker it found or made.
        """
        ...

    def create_onboarding_agent(
        self,
        task_run_id: int,
        worker_id: int,
        agent_id: str,
        agent_registration_id: str | None = None,
        status: str = Status.NONE,
    ) -> Deferred[StoredAgent]: ...

    def get_agent(self, agent_id: str) -> Deferred[StoredAgent | None]: ...

    def find_agent_by_registration_id(
        self, agent_registration_id: str
    ) -> Deferred[StoredAgent | None]:
        """The most recently created agent with this registration id."""
        ...

    def list_agents(
        self, task_run_id: int | None = None, worker_id: int | None = None
    ) -> Deferred[list[StoredAgent]]: ...

    def recently_finished_agents(
        self, task_run_id: int, since: float, limit: int
    ) -> Deferred[dict[str, str]]:
        """The run's agents in a final status changed at or after `since` (at most
        `limit`, the newest): id -> status."""
        ...

    def set_agent_status(
        self, agent_id: str, status: str, unit_status: str | None = None
    ) -> Deferred[bool]:
        """Record a new status (with history); False if it already had it.

        With unit_status, the agent's unit moves to it in the same transaction,
        provided this agent still holds it (available releases it to the pool).
        """
        ...

    def status_history(self, agent_id: str) -> Deferred[list[StatusChange]]: ...

    def count_agents_by_status(self, task_run_id: int) -> Deferred[dict[str, int]]: ...

    def count_active_agents(
        self, worker_id: int, task_run_id: int | None = None, kind: str | None = None
    ) -> Deferred[int]:
        """The worker's agents in an active status (lifecycle.ACTIVE)."""
        ...

    def count_worker_units(self, task_run_id: int, worker_id: int) -> Deferred[int]:
        """Units of the run the worker has done or has in progress (lifecycle.COUNTED)."""
        ...

    def worked_on(self, task_run_id: int, worker_id: int) -> Deferred[WorkedOn]: ...

    def set_agent_init_data(self, agent_id: str, data: Any) -> Deferred[None]:
        """Keep the task data the agent was given, so a restart can hand it out again.

        Fails with NoSuchAgent if there is no such agent.
        """
        ...

    def resumable_agents(self, task_run_id: int) -> Deferred[list[ResumableAgent]]:
        """The run's agents in an active status, oldest first, with all a resume needs.

        Read in one transaction, so the agents, units and logs agree.
        """
        ...

    def recover_after_restart(self, keep_task_run_id: int | None = None) -> Deferred[list[str]]:
        """Mark every still-active agent disconnect and return its unit to the pool.

        Meant for start-up, before any worker is served; the ids of those agents.
        The active agents of keep_task_run_id are left as they are (with their
        units), for the daemon to resume.
        """
        ...


class SubmissionsAndLiveUpdates(Protocol):
    """Submissions with their uploaded files, and each agent's log of live updates."""

    def write_file(
        self, original_name: str, content: bytes, mimetype: str
    ) -> Deferred[SubmissionFile]:
        """Keep an uploaded file under data_dir/files/, written off the reactor thread."""
        ...

    def store_submission(
        self,
        agent_id: str,
        kind: str,
        data: Any,
        dedupe_key: str | None = None,
        files: Sequence[SubmissionFile] = (),
        agent_status: str | None = None,
        unit_status: str | None = None,
    ) -> Deferred[bool]:
        """Store a submission and its file rows; False if dedupe_key was stored before.

        With agent_status, the agent moves to it in the same transaction (as
        `set_agent_status` would, unit_status with it), a repeat too: the status
        commits with the submission rather than in a transaction of its own.
        """
        ...

    def list_submissions(
        self, agent_id: str | None = None, task_run_id: int | None = None, kind: str | None = None
    ) -> Deferred[list[Submission]]:
        """Submissions in arrival order, with their files."""
        ...

    def store_live_update(
        self, agent_id: str, direction: str, data: Any, update_id: str | None = None
    ) -> Deferred[bool]:
        """Append to the agent's log; False if update_id was already stored for it that way."""
        ...

    def live_updates(
        self, agent_id: str, direction: str | None = None
    ) -> Deferred[list[LiveUpdate]]:
        """The agent's live updates in arrival order."""
        ...


@attrs.frozen
class KeptSetting:
    """A run setting changed at run time, with the ini file's value when it was changed."""

    name: str
    value: Any
    ini_value: Any
    changed_at: float


@attrs.frozen
class SettingChange:
    name: str
    value: Any  # None: back to the ini file's value
    ini_value: Any
    reason: str
    changed_at: float


class RunRecord(Protocol):
    """What a run keeps beyond its work: settings changed at run time, connection events."""

    def kept_settings(self, task_run_id: int) -> Deferred[dict[str, KeptSetting]]: ...

    def keep_setting(
        self, task_run_id: int, name: str, value: Any, ini_value: Any, reason: str
    ) -> Deferred[None]:
        """Keep (value None: forget) a changed setting, and record the change."""
        ...

    def setting_changes(self, task_run_id: int) -> Deferred[list[SettingChange]]: ...

    def store_connection_events(
        self, events: Sequence[ConnectionEvent], repeats: Sequence[EventRepeats] = ()
    ) -> Deferred[int]:
        """Keep events of agents that exist, up to EVENTS_KEPT_PER_KIND per agent and kind,
        counting the rest, and add `repeats` (events their sender counted and did not
        send) to the counts; the number kept."""
        ...

    def connection_events(
        self, task_run_id: int
    ) -> Deferred[tuple[list[ConnectionEvent], list[EventRepeats]]]:
        """The run's kept events in time order, and the repeats counted past the bound."""
        ...


class Database(
    RunsAndUnits,
    WorkersAndQualifications,
    AgentRecords,
    SubmissionsAndLiveUpdates,
    RunRecord,
    Protocol,
):
    """Everything Architect stores. Each write fires its Deferred after commit.

    An engine implements the five parts above; each is a Protocol of its own so that
    a part can be written, tested and read on its own.
    """

    @property
    def data_dir(self) -> Path:
        """The folder holding the database and, under files/, the submitted files."""
        ...

    def close(self) -> Deferred[None]:
        """Finish pending work and release the database."""
        ...

    def watch_commits(self, observer: Callable[[float, int], None]) -> None:
        """Call observer(seconds, interactions) after each committed transaction, on the
        reactor thread: how long it took from its start to its commit, and how many
        interactions it held (for the database commit metric)."""
        ...
