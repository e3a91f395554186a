"""Run-time controls of a running daemon's backend, as the admin listener offers them.

Each acts where the daemon itself would: an agent is expired through its own status
change (pushed to its page, recorded, its unit back to the pool as `[task] return_units`
says); a worker is blocked by the `architect_blocked` qualification, which registration
refuses (backend/workers.py); qualifications are written to the database the daemon
serves from; the limits and the live timeout replace the pool's and the runner's
settings, for registrations (and live assignments) from now on; added units are stored
after the run's last assignment (backend/more_units.py). Changed settings are kept
with the run and applied again at a restart (architect/run_settings.py); a value of null
returns a setting to the ini file's.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from architect.admin.parts import DaemonParts
from architect.backend.more_units import UnitsRefused, append_units, checked_units
from architect.backend.workers import DEFAULT_PROVIDER, StoredWorkerPool
from architect.nul import NUL
from architect.protocol import Status
from architect.qualifications import BLOCKED
from architect.run_settings import SETTINGS
from architect.storage import Database, Worker


class ControlError(Exception):
    """A control that cannot be done: `code` is the HTTP status to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str) or not value:
        raise ControlError(400, f"{key!r} must be a non-empty string")
    if NUL in value:  # architect/nul.py
        raise ControlError(400, f"{key!r} must not hold NUL characters")
    return value


class Controls:
    def __init__(self, parts: DaemonParts) -> None:
        self.parts = parts

    def _backend(self) -> tuple[StoredWorkerPool, Database]:
        pool, database = self.parts.pool, self.parts.database
        if pool is None or database is None:
            raise ControlError(409, "this daemon runs no backend (or it is not ready yet)")
        return pool, database

    async def _worker(self, database: Database, body: dict[str, Any], create: bool) -> Worker:
        name = _text(body, "worker")
        provider = _text(body, "provider", DEFAULT_PROVIDER)
        if create:  # so a worker can be blocked or qualified before they come
            return await database.find_or_create_worker(provider, name)
        for worker in await database.list_workers():
            if worker.provider_type == provider and worker.worker_name == name:
                return worker
        raise ControlError(404, f"no {provider} worker named {name!r}")

    async def expire_agent(self, body: dict[str, Any]) -> dict[str, Any]:
        pool, _ = self._backend()
        agent_id = _text(body, "agent_id")
        agent = pool.get_agent(agent_id)
        if agent is None:
            raise ControlError(404, f"no agent {agent_id!r} at work")
        agent.set_status(Status.EXPIRED)
        await pool.settled()
        return {"agent_id": agent_id, "status": agent.status}

    async def block_worker(self, body: dict[str, Any]) -> dict[str, Any]:
        _, database = self._backend()
        worker = await self._worker(database, body, create=True)
        await database.grant_qualification(worker.id, BLOCKED, 1)
        return {"worker": worker.worker_name, "provider": worker.provider_type, "blocked": True}

    async def unblock_worker(self, body: dict[str, Any]) -> dict[str, Any]:
        _, database = self._backend()
        worker = await self._worker(database, body, create=False)
        if not await database.revoke_qualification(worker.id, BLOCKED):
            raise ControlError(409, f"worker {worker.worker_name!r} is not blocked")
        return {"worker": worker.worker_name, "provider": worker.provider_type, "blocked": False}

    async def grant(self, body: dict[str, Any]) -> dict[str, Any]:
        _, database = self._backend()
        qualification = _text(body, "qualification")
        value = body.get("value", 1)
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ControlError(400, "'value' must be plain JSON") from None
        worker = await self._worker(database, body, create=True)
        await database.grant_qualification(worker.id, qualification, value)
        return {"worker": worker.worker_name, "qualification": qualification, "value": value}

    async def revoke(self, body: dict[str, Any]) -> dict[str, Any]:
        _, database = self._backend()
        qualification = _text(body, "qualification")
        worker = await self._worker(database, body, create=False)
        if not await database.revoke_qualification(worker.id, qualification):
            raise ControlError(
                404, f"worker {worker.worker_name!r} has no qualification {qualification!r}"
            )
        return {"worker": worker.worker_name, "qualification": qualification, "revoked": True}

    async def add_units(self, body: dict[str, Any]) -> dict[str, Any]:
        pool, _ = self._backend()
        try:
            units = checked_units(body.get("units"))
        except UnitsRefused as e:
            raise ControlError(400, str(e)) from None
        return await append_units(pool, units)

    def settings(self) -> dict[str, Any]:
        pool, _ = self._backend()
        return {key: getattr(pool.settings, key) for key in SETTINGS}

    async def change_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        pool, database = self._backend()
        changes: dict[str, Any] = {}
        resets: list[str] = []
        for key, value in body.items():
            if key not in SETTINGS:
                raise ControlError(400, f"{key!r} cannot change at run time (only: {SETTINGS})")
            whole = key != "timeout"
            if value is None:  # back to the ini file's value
                resets.append(key)
                changes[key] = getattr(pool.ini_settings, key)
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or value < 0
                or value != value
                or value == float("inf")
                or (whole and value != int(value))
            ):
                kind = "a whole number" if whole else "a number of seconds"
                raise ControlError(400, f"{key!r} must be 0 (no limit) or {kind}")
            changes[key] = int(value) if whole else float(value)
        if not changes:
            raise ControlError(400, f"name a setting to change: {', '.join(SETTINGS)}")
        run_id = pool.task_run.id
        for key, value in changes.items():  # kept first: a change in force is one kept
            reset = key in resets
            ini_value = getattr(pool.ini_settings, key)
            kept = None if reset else value
            await database.keep_setting(run_id, key, kept, ini_value, "reset" if reset else "admin")
        pool.settings = attrs.evolve(pool.settings, **changes)
        runner = self.parts.runner
        if "timeout" in changes and runner is not None and runner.live is not None:
            runner.live.timeout = changes["timeout"] or None  # for assignments starting now
        return self.settings()
