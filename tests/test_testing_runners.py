"""The examples' tests under both runners fail when they should: a copy of an example
with one assertion broken fails under `python -m twisted.trial` and under pytest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BROKEN = 'self.assertIn(stored.data["label"], ["no such label"])'


def broken_copy(folder: Path) -> Path:
    """examples/static_labelling as the package broken_examples.static_labelling, with
    one assertion that cannot hold."""
    package = folder / "broken_examples"
    shutil.copytree(ROOT / "examples" / "static_labelling", package / "static_labelling")
    (package / "__init__.py").write_text("")
    test = package / "static_labelling" / "test_task.py"
    source = test.read_text().replace(
        "examples.static_labelling", "broken_examples.static_labelling"
    )
    assert 'self.assertIn(stored.data["label"], task.LABELS)' in source
    test.write_text(source.replace('self.assertIn(stored.data["label"], task.LABELS)', BROKEN))
    return package


def run(folder: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(folder)])}
    return subprocess.run(
        [sys.executable, "-m", *command],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_broken_example_fails_under_trial_and_pytest(tmp_path: Path) -> None:
    broken_copy(tmp_path)
    trial = run(tmp_path, "twisted.trial", "broken_examples")
    assert trial.returncode != 0, trial.stdout
    assert "Ran 5 tests" in trial.stdout and "FAILED (failures=1, successes=4)" in trial.stdout
    assert "test_the_bot_labels_a_text" in trial.stdout and "no such label" in trial.stdout
    pytest_run = run(tmp_path, "pytest", "-p", "no:cacheprovider", "broken_examples")
    assert pytest_run.returncode == 1, pytest_run.stdout
    assert "1 failed, 4 passed" in pytest_run.stdout
    assert "test_the_bot_labels_a_text" in pytest_run.stdout
