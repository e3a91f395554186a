"""What the admin listener reads and acts on: the daemon's parts, as tap.ArchitectService
holds them (each None when this process does not run it, or before the backend is built)."""

from __future__ import annotations

from typing import Protocol

from architect.backend.workers import StoredWorkerPool
from architect.router.hub import RouterHub
from architect.storage import Database
from architect.tasks.runner import TaskRunner


class DaemonParts(Protocol):
    @property
    def hub(self) -> RouterHub | None: ...

    @property
    def pool(self) -> StoredWorkerPool | None: ...

    @property
    def database(self) -> Database | None: ...

    @property
    def runner(self) -> TaskRunner | None: ...
