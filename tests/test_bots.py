"""`architect bots`: the shipped tasks' bots pass a run with disruptions; a broken task
fails one with a report that says what went wrong."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from architect.config import load_config
from architect.testing.command import BotOptions, run_bots
from tests.clients import reactor

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [
    ROOT / "conf" / "router.ini",
    ROOT / "examples" / "static_labelling" / "router.ini",
    ROOT / "examples" / "live_chat" / "router.ini",
    ROOT / "examples" / "remote_procedure" / "router.ini",
]


async def bots(config: Path, **options: Any) -> dict[str, Any]:
    settings = {"workers": 4, "think": 0.0, "progress": False, "in_process": True, **options}
    return await run_bots(
        reactor, load_config(config), BotOptions(**settings), io.StringIO(), io.StringIO()
    )


def a_task(folder: Path, source: str, **task: str) -> Path:
    """A task module and its ini in `folder`."""
    (folder / "task.py").write_text(textwrap.dedent(source))
    keys = "".join(f"{key} = {value}\n" for key, value in task.items())
    ini = folder / "router.ini"
    ini.write_text(f"[backend]\nmode = embedded\n[task]\nname = t\nmodule = task.py\n{keys}")
    return ini


@pytest.mark.parametrize("config", SHIPPED, ids=lambda path: path.parent.name)
@pytest_twisted.ensureDeferred
async def test_the_shipped_bots_pass_with_disruptions(config: Path) -> None:
    report = await bots(config, disconnect_rate=0.5, seed=3)
    assert report["passed"], report["failures"]
    assert report["workers"]["completed"] == report["workers"]["started"] >= 4
    checks = report["checks"]
    assert checks["submissions_acknowledged"] == checks["submissions_stored"] >= 4
    assert report["disruptions"]["drops"] + report["disruptions"]["reloads"] >= 1


@pytest_twisted.ensureDeferred
async def test_a_hook_that_raises_fails_the_run_and_says_so(tmp_path: Path) -> None:
    source = """
        def init_data(unit):
            return {"text": unit.assignment_data["no such key"]}
    """
    report = await bots(a_task(tmp_path, source))
    assert not report["passed"]
    assert report["refusals"] == {
        "There is no work available for you right now. Please try again later.": 4
    }
    assert report["daemon_errors"]["count"] >= 4
    assert "init_data failed" in report["daemon_errors"]["first"][0]
    assert "KeyError: 'no such key'" in report["daemon_errors"]["first"][0]
    assert "4 workers refused" in report["failures"]


@pytest_twisted.ensureDeferred
async def test_a_page_that_never_submits_fails_the_run(tmp_path: Path) -> None:
    source = """
        async def bot(worker):
            await worker.connect()  # and then nothing

        PROCEDURES = {"noop": lambda agent, args: None}
    """
    report = await bots(a_task(tmp_path, source))
    assert not report["passed"]
    [(kind, problem)] = report["problems"].items()
    assert kind == "the bot returned without submitting"
    assert problem["count"] == 4
    assert report["failures"] == ["4 workers could not play the task through"]


@pytest_twisted.ensureDeferred
async def test_a_bot_that_hangs_is_stopped_and_said(tmp_path: Path) -> None:
    source = """
        async def bot(worker):
            await worker.connect()
            await worker.next_update(timeout=60)  # the task never says anything

        async def run_assignment(assignment, agents):
            pass
    """
    report = await bots(a_task(tmp_path, source), workers=2, worker_timeout=1.0)
    [problem] = report["problems"].values()
    assert problem["example"] == "did not finish within 1 s (it was waiting for a live update)"


@pytest_twisted.ensureDeferred
async def test_a_task_without_a_bot_hook_gets_a_default_one(tmp_path: Path) -> None:
    report = await bots(a_task(tmp_path, "LABELS = ['a']\n"))
    assert report["passed"], report["failures"]


@pytest.mark.slow
def test_the_command_prints_the_report_and_exits_by_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "architect.cli", "bots", "--workers", "3", "--no-progress"]
    good = subprocess.run(
        [*command, "--config", str(SHIPPED[1]), "--json", "--disconnect-rate", "0.5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(good.stdout)["passed"] is True
    broken = a_task(tmp_path, "def init_data(unit):\n    raise ValueError('broken')\n")
    bad = subprocess.run(
        [*command, "--config", str(broken)], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAILED: 3 workers refused; the daemon logged" in bad.stdout
    assert "ValueError: broken" in bad.stdout
    assert bad.stderr == ""  # the daemon's log goes nowhere without --log
