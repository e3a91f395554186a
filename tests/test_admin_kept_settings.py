"""Limits changed at run time are kept with the run: a restart applies them again, unless
the ini file's value changed since (the file wins); a reset (or null) returns a setting to
the ini file's value; each change is recorded. Against real daemons and their database."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest_twisted

from architect.config import StorageConfig, TaskConfig
from architect.run_settings import restored
from architect.storage import open_database
from tests.admin_support import control, register, with_admin
from tests.clients import Browser
from tests.daemon import Daemons, daemon_config
from tests.test_admin_controls import architect_admin, ini_for

# Their daemons keep the run in a database: each test runs on every engine (conftest).
DAEMONS_ON_EVERY_ENGINE = True


@pytest_twisted.ensureDeferred
async def test_changed_limits_survive_a_restart_until_reset(
    daemons: Daemons, tmp_path: Path
) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    code, answer = await control(daemon, "settings", {"maximum_units_per_worker": 1, "timeout": 45})
    assert code == 200, answer
    daemon = await daemons.restart(daemon)
    assert daemon.pool.settings.maximum_units_per_worker == 1
    assert daemon.pool.settings.timeout == 45
    nia = Browser()
    assert (await register(nia, daemon.url, "nia", "a1"))["agent_id"]
    refused = await register(nia, daemon.url, "nia", "a2")
    assert "maximum amount" in refused["failure_reason"]
    # `architect admin reset` and `set KEY=null` both go back to the ini file's value.
    code, _ = await architect_admin(ini_for(daemon, tmp_path), "reset", "timeout")
    assert code == 0 and daemon.pool.settings.timeout == 0
    code, answer = await control(daemon, "settings", {"maximum_units_per_worker": None})
    assert code == 200 and answer["maximum_units_per_worker"] == 0
    assert (await register(nia, daemon.url, "nia", "a2"))["agent_id"]
    daemon = await daemons.restart(daemon)
    assert daemon.pool.settings.maximum_units_per_worker == 0
    assert daemon.pool.settings.timeout == 0
    run = daemon.pool.task_run.id
    changes = [(c.name, c.value, c.reason) for c in await daemon.database.setting_changes(run)]
    assert changes == [
        ("maximum_units_per_worker", 1, "admin"),
        ("timeout", 45.0, "admin"),
        ("timeout", None, "reset"),
        ("maximum_units_per_worker", None, "reset"),
    ]


@pytest_twisted.ensureDeferred
async def test_a_newer_edit_of_the_ini_file_wins_at_a_restart(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    await control(daemon, "settings", {"allowed_concurrent": 1, "maximum_units_per_worker": 3})
    config = daemon.config
    await daemons.stop(daemon)
    # The researcher edits allowed_concurrent in the file; maximum_units_per_worker stays.
    edited = attrs.evolve(config, task=attrs.evolve(config.task, allowed_concurrent=2))
    daemon = await daemons.start(edited)
    assert daemon.pool.settings.allowed_concurrent == 2
    assert daemon.pool.settings.maximum_units_per_worker == 3
    run = daemon.pool.task_run.id
    assert set(await daemon.database.kept_settings(run)) == {"maximum_units_per_worker"}
    last = (await daemon.database.setting_changes(run))[-1]
    assert (last.name, last.value, last.ini_value, last.reason) == (
        "allowed_concurrent",
        None,
        2,
        "ini_changed",
    )


@pytest_twisted.ensureDeferred
async def test_kept_settings_of_unknown_names_are_left_alone(storage_config: StorageConfig) -> None:
    database = await open_database(storage_config)
    try:
        run = await database.find_or_create_task_run("r", {})
        await database.keep_setting(run.id, "units", 9, 1, "admin")
        await database.keep_setting(run.id, "timeout", 5.0, 0.0, "admin")
        settings = await restored(database, run.id, TaskConfig())
        assert settings.timeout == 5.0
        assert (await database.kept_settings(run.id))["units"].value == 9
    finally:
        await database.close()
