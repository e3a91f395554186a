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
    # The distribution is architect-router (PyPI's "architect" is another project).
    (wheel,) = wheels.glob("architect_router-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert "twisted/plugins/architect_plugin.py" in names
    # The demo (its task, units and page), the monitor page and the browser client.
    for data in (
        "architect/demo/task.py",
        "architect/demo/units.json",
        "architect/demo/page/index.html",
        "architect/admin/page/index.html",
        "architect/admin/page/monitor.js",
        "architect/static/architect.js",
    ):
        assert data in names, data
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "architect = architect.cli:main" in archive.read(entry_points).decode()
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


def test_plain_install_has_every_dependency_the_daemon_imports(tmp_path: Path) -> None:
    # A fresh virtualenv with the package alone (no test extras): every module imports,
    # but the test tools (architect/testing, the demo's test), which need the [testing] extra,
    # and architect/cluster, which needs the [cluster] extra (a config naming [cluster] redis
    # without it is refused at load: tests/test_config_cluster.py).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", str(ROOT)], check=True, timeout=600)
    modules = [
        "architect." + ".".join(path.relative_to(ROOT / "architect").with_suffix("").parts)
        for path in sorted((ROOT / "architect").rglob("*.py"))
        if path.name != "__init__.py"
        and not path.name.startswith("test_")
        and "testing" not in path.relative_to(ROOT / "architect").parts
        and "cluster" not in path.relative_to(ROOT / "architect").parts
    ]
    out = subprocess.run(
        [python, "-c", f"import importlib; [importlib.import_module(m) for m in {modules!r}]"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    help_text = subprocess.run(
        [str(venv / "bin" / "twistd"), "architect", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_text.returncode == 0 and "--config" in help_text.stdout
    # The command comes with it.
    token = subprocess.run(
        [str(venv / "bin" / "architect"), "token"], capture_output=True, text=True, timeout=60
    )
    assert token.returncode == 0 and len(token.stdout.strip()) == 43
    bots = subprocess.run(
        [str(venv / "bin" / "architect"), "bots", "--config", str(ROOT / "conf" / "router.ini")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bots.returncode == 2
    assert bots.stderr == "architect: bots need treq: pip install 'architect-router[testing]'\n"
