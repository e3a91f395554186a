"""Units added to a running run, against real daemons: by the admin control `add_units`
(and `architect admin add-units FILE`), and by SIGHUP reading `[task] units` again. Each
is given to a registration at once and kept as the run's own assignments."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.logger import capturedLogs, formatEvent

from architect.backend.more_units import MAX_UNITS_ADDED, UnitsOnHangup
from architect.cli import parser
from architect.config import load_config
from architect.storage import UnitStatus
from tests.admin_support import ADMIN_TOKEN, bearer, control, register, with_admin
from tests.clients import Browser, wait_for
from tests.daemon import Daemon, Daemons, daemon_config, relocated
from tests.test_admin_controls import architect_admin, ini_for


async def use_up(daemon: Daemon, count: int, prefix: str = "w") -> None:
    for n in range(count):
        assert (await register(Browser(), daemon.url, f"{prefix}{n}"))["agent_id"]


async def no_work(daemon: Daemon, worker: str) -> bool:
    answer = await register(Browser(), daemon.url, worker)
    return answer["agent_id"] is None and "no work" in answer["failure_reason"].lower()


@pytest_twisted.ensureDeferred
async def test_added_units_are_given_out_at_once(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    await use_up(daemon, 10)  # the 10 built-in units
    assert await no_work(daemon, "late")

    units = [{"text": "more 1"}, {"text": "more 2"}]
    code, answer = await control(daemon, "add_units", {"units": units})
    assert code == 200, answer
    assert (answer["added"], answer["first_index"]) == (2, 10)
    assert answer["units"][UnitStatus.AVAILABLE] == 2
    late = await register(Browser(), daemon.url, "late", "a2")
    assert late["agent_id"] and late["init_task_data"]["text"] == "more 1"
    stored = await daemon.database.list_units(daemon.pool.task_run.id)
    assert [u.assignment_data for u in stored[10:]] == units


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "non-empty list"),
        ({"units": []}, "non-empty list"),
        ({"units": {"text": "x"}}, "non-empty list"),
        ({"units": [{"text": "x"}, "y"]}, "unit 2 is not a JSON object"),
        ({"units": [{}] * (MAX_UNITS_ADDED + 1)}, f"at most {MAX_UNITS_ADDED}"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_units_that_cannot_be_added_are_refused_and_nothing_is_stored(
    daemons: Daemons, body: dict[str, object], message: str
) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    code, answer = await control(daemon, "add_units", body)
    assert code == 400 and message in answer["error"]
    assert len(await daemon.database.list_units(daemon.pool.task_run.id)) == 10


@pytest_twisted.ensureDeferred
async def test_an_oversized_body_is_refused(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    too_big = b'{"units": [' + b'{"t": "' + b"x" * (16 * 1024 * 1024) + b'"}]}'
    response = await treq.post(
        f"{daemon.admin_url}/control/add_units", data=too_big, headers=bearer(ADMIN_TOKEN)
    )
    assert response.code == 413
    assert "too large" in json.loads(await response.text())["error"]
    assert len(await daemon.database.list_units(daemon.pool.task_run.id)) == 10


@pytest_twisted.ensureDeferred
async def test_the_add_units_command(
    daemons: Daemons, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    ini = ini_for(daemon, tmp_path)
    more = tmp_path / "more.jsonl"
    more.write_text('{"text": "x"}\n\n{"text": "y"}\n')
    code, out = await architect_admin(ini, "add-units", str(more))
    assert code == 0 and json.loads(out)["added"] == 2
    assert len(await daemon.database.list_units(daemon.pool.task_run.id)) == 12
    capsys.readouterr()
    more.write_text('{"text": "x"}\n[1]\n')
    code, _ = await architect_admin(ini, "add-units", str(more))
    assert code == 1 and "line 2 must be a JSON object" in capsys.readouterr().err
    code, _ = await architect_admin(ini, "add-units", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read" in capsys.readouterr().err
    assert len(await daemon.database.list_units(daemon.pool.task_run.id)) == 12


def test_the_config_may_follow_the_command() -> None:
    for argv in (
        ["admin", "--config", "x.ini", "add-units", "more.json"],
        ["admin", "add-units", "--config", "x.ini", "more.json"],
        ["admin", "add-units", "more.json", "-c", "x.ini"],
    ):
        args = parser().parse_args(argv)
        assert (args.config, args.action, args.file) == ("x.ini", "add-units", "more.json")
    assert parser().parse_args(["admin", "state"]).config == "conf/router.ini"


def write_ini(folder: Path, name: str, units: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "units.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in units))
    ini = folder / "router.ini"
    ini.write_text(f"[backend]\nmode = embedded\n[task]\nname = {name}\nunits = units.jsonl\n")
    return ini


async def hang_up(daemon: Daemon) -> int:
    """SIGHUP to this process (the daemon's handler is checked first: without it, the
    signal would end the test run), and the number of assignments its reading added."""
    service = daemon.service.getServiceNamed("units")
    assert isinstance(service, UnitsOnHangup)
    units: UnitsOnHangup = service
    handler = signal.getsignal(signal.SIGHUP)
    assert getattr(handler, "__self__", None) is units, "the daemon's SIGHUP handler is not set"
    units.done = None
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_for(lambda: units.done is not None, "SIGHUP handled")  # by the reactor
    reading = units.done
    assert reading is not None
    added: int = await reading
    return added


@pytest_twisted.ensureDeferred
async def test_sighup_adds_the_units_files_new_lines(daemons: Daemons, tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "run", "grows", ["a", "b"])
    daemon = await daemons.start(relocated(load_config(ini), tmp_path / "run"))
    await use_up(daemon, 2)
    assert await no_work(daemon, "late")

    write_ini(tmp_path / "run", "grows", ["a", "b", "c", "d"])
    assert await hang_up(daemon) == 2
    assert (await register(Browser(), daemon.url, "late", "a2"))["init_task_data"] == {"text": "c"}
    assert await hang_up(daemon) == 0  # read again: nothing new
    assert len(await daemon.database.list_units(daemon.pool.task_run.id)) == 4


@pytest_twisted.ensureDeferred
async def test_sighup_with_a_broken_or_renamed_ini_adds_nothing(
    daemons: Daemons, tmp_path: Path
) -> None:
    ini = write_ini(tmp_path / "run", "kept", ["a"])
    daemon = await daemons.start(relocated(load_config(ini), tmp_path / "run"))
    write_ini(tmp_path / "run", "another", ["a", "b"])
    with capturedLogs() as events:
        assert await hang_up(daemon) == 0
    assert any("names task run 'another'" in formatEvent(e) for e in events)
    ini.write_text("[backend]\nmode = embedded\n[task]\nname = kept\nunits = units.jsonl\n")
    (tmp_path / "run" / "units.jsonl").write_text("not json\n")
    with capturedLogs() as events:
        assert await hang_up(daemon) == 0
    assert any("is not valid JSON" in formatEvent(e) for e in events)
    assert len(await daemon.database.list_units(daemon.pool.task_run.id)) == 1
