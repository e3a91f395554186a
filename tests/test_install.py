"""A regular (non-editable) install carries the twistd plugin, the package data and finds both."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

FIND_PLUGIN = (
    "from twisted.plugin import getPlugins;"
    "from twisted.application.service import IServiceMaker;"
    "import architect;"
    "print(architect.__file__);"
    "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))"
)


def test_wheel_install_exposes_the_plugin(tmp_path: Path) -> None:
    wheels, target = tmp_path / "wheels", tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("architect-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/architect_plugin.py" in names
    assert "twisted/plugins/__init__.py" not in names  # never shadow Twisted's own package
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    # -S: no .pth files, so the editable checkout is invisible; only the installed copy counts.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_path("purelib")]),
    }
    out = subprocess.run(
        [sys.executable, "-S", "-c", FIND_PLUGIN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    location, plugins = out.stdout.splitlines()
    assert location.startswith(str(target))
    assert "'architect'" in plugins
