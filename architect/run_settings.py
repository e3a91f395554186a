"""The [task] settings changed at run time (`architect admin set`), kept with the run so a
restart applies them again: unless the ini file's value is no longer the one in force when
the change was made (the researcher's newer edit of the file wins). Each change, reset
and such a win is recorded (run_setting_changes)."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.logger import Logger

from architect.config import TaskConfig
from architect.storage import Database

log = Logger()

# The [task] settings that may change at run time.
SETTINGS = ("maximum_units_per_worker", "allowed_concurrent", "timeout")


async def restored(database: Database, task_run_id: int, ini: TaskConfig) -> TaskConfig:
    """The settings to run with: the ini file's, with the changes kept for the run."""
    changes: dict[str, Any] = {}
    for name, kept in (await database.kept_settings(task_run_id)).items():
        if name not in SETTINGS:
            continue
        now_in_ini = getattr(ini, name)
        if kept.ini_value != now_in_ini:
            log.info(
                "[task] {name} = {ini} in the ini file since it was set to {value} at run"
                " time: the file's value wins",
                name=name,
                ini=now_in_ini,
                value=kept.value,
            )
            await database.keep_setting(task_run_id, name, None, now_in_ini, "ini_changed")
            continue
        changes[name] = kept.value
        log.info("[task] {name} = {value}, as changed at run time", name=name, value=kept.value)
    return attrs.evolve(ini, **changes) if changes else ini
