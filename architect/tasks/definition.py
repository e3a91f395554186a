"""What a task module provides, and what its hooks are handed.

A task module is plain Python with module-level hooks (all optional):

    TASK_KIND = "static" | "live" | "remote_procedure"   # inferred when absent
    def init_data(unit) -> dict                           # static; default: the assignment data
    def validate_submission(agent, data) -> bool          # static
    async def run_assignment(assignment, agents) -> None  # live
    PROCEDURES = {"name": fn}                             # remote procedure: fn(agent, args)
    def worker_can_do_unit(worker, unit) -> bool          # every kind
    def onboarding_data(worker) -> dict                   # every kind, with onboarding on
    def validate_onboarding(worker, data) -> bool         # every kind, with onboarding on
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import attrs

from architect.tasks.hooks import Hook, TaskModuleError

STATIC = "static"
LIVE = "live"
REMOTE_PROCEDURE = "remote_procedure"
TASK_KINDS = (STATIC, LIVE, REMOTE_PROCEDURE)


@attrs.frozen
class WorkerInfo:
    """A worker as hooks see it."""

    worker_id: str
    worker_name: str
    provider_type: str
    qualifications: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class UnitInfo:
    """A unit as hooks see it: one seat of one assignment."""

    unit_id: str
    assignment_index: int
    unit_index: int
    assignment_data: Mapping[str, Any]


@attrs.frozen
class TaskDefinition:
    kind: str = STATIC
    init_data: Hook | None = None
    validate_submission: Hook | None = None
    run_assignment: Hook | None = None
    procedures: Mapping[str, Hook] = attrs.field(factory=dict)
    worker_can_do_unit: Hook | None = None
    onboarding_data: Hook | None = None
    validate_onboarding: Hook | None = None
    name: str = "task"

    @classmethod
    def from_module(cls, module: ModuleType) -> TaskDefinition:
        def hook(name: str) -> Hook | None:
            value = getattr(module, name, None)
            if value is not None and not callable(value):
                raise TaskModuleError(f"{module.__name__}.{name} must be a function")
            return value

        procedures = getattr(module, "PROCEDURES", {}) or {}
        if not isinstance(procedures, Mapping) or not all(
            isinstance(k, str) and callable(v) for k, v in procedures.items()
        ):
            raise TaskModuleError(f"{module.__name__}.PROCEDURES must map names to functions")
        run_assignment = hook("run_assignment")
        kind = getattr(module, "TASK_KIND", None)
        if kind is None:
            kind = LIVE if run_assignment else REMOTE_PROCEDURE if procedures else STATIC
        if kind not in TASK_KINDS:
            raise TaskModuleError(
                f"{module.__name__}.TASK_KIND must be one of {', '.join(TASK_KINDS)}, not {kind!r}"
            )
        if kind == LIVE and run_assignment is None:
            raise TaskModuleError(f"{module.__name__}: a live task needs run_assignment")
        return cls(
            kind=kind,
            init_data=hook("init_data"),
            validate_submission=hook("validate_submission"),
            run_assignment=run_assignment,
            procedures=dict(procedures),
            worker_can_do_unit=hook("worker_can_do_unit"),
            onboarding_data=hook("onboarding_data"),
            validate_onboarding=hook("validate_onboarding"),
            name=module.__name__,
        )
