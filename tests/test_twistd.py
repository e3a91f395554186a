"""The real daemon as a subprocess: `twistd -n architect --config FILE`."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import ensureDeferred

from architect.protocol import AGENT_DETAILS, ALIVE, MEPHISTO, REGISTER_AGENT
from tests.clients import open_socket

pytestmark = pytest.mark.slow
TWISTD = [str(Path(sys.executable).parent / "twistd")]


def twistd(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "architect", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_to_the_end(config: Path) -> subprocess.CompletedProcess[str]:
    """The daemon with this config, until it ends by itself (a start that fails)."""
    return subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "architect", "--config", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[int]:
    config = tmp_path / "router.ini"
    # Like Mephisto's own backend, which sends no token: trusted from loopback, explicitly.
    config.write_text(
        "[router]\nlisten = tcp:0:interface=127.0.0.1\ntrust_loopback = on\n[backend]\nmode = off\n"
    )
    process = twistd("--config", str(config), cwd=tmp_path)
    assert process.stdout is not None
    port = None
    deadline = time.monotonic() + 30
    seen = []
    while port is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(r"Site starting on (\d+)", line)
        if match:
            port = int(match.group(1))
    if port is None:
        process.kill()
        pytest.fail("the daemon did not start:\n" + "".join(seen))
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest_twisted.ensureDeferred
async def test_registration_through_the_daemon(daemon: int) -> None:
    backend = await open_socket(daemon)
    backend.send(ALIVE, MEPHISTO)
    answer = ensureDeferred(
        treq.post(
            f"http://127.0.0.1:{daemon}/request_agent",
            data=json.dumps({"provider_data": {"worker_name": "w"}}).encode(),
        )
    )
    request = await backend.next(REGISTER_AGENT)
    backend.send(
        AGENT_DETAILS,
        request.subject_id,
        {"request_id": request.data["request_id"], "agent_id": "x"},
    )
    response = await answer
    assert response.code == 200
    body = json.loads(await response.text())
    assert body["data"]["agent_id"] == "x"
    await backend.close()


def test_plugin_help_lists_the_options(tmp_path: Path) -> None:
    out = subprocess.run(
        [*TWISTD, "architect", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "--config" in out.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "no such file"),
        (
            "[router]\nrequest_timeout = never\n",
            "[router] request_timeout: 'never' is not a number",
        ),
        ("[surprise]\n", "[surprise]: unknown section"),
        # Serving the config's own folder would hand out the token and the database.
        ("[router]\nstatic_dir = .\n", "[router] static_dir: serves the config file"),
    ],
)
def test_bad_config_ends_the_start_with_one_line(
    tmp_path: Path, text: str | None, expected: str
) -> None:
    config = tmp_path / "router.ini"
    if text is not None:
        config.write_text(text)
    out = run_to_the_end(config)
    assert out.returncode != 0
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert str(config) in lines[0] and expected in lines[0]
    assert "Traceback" not in out.stderr


def test_a_port_that_cannot_be_had_ends_the_start_with_one_line(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "router.ini"
    config.write_text(f"[router]\nlisten = tcp:{port}:interface=127.0.0.1\n[backend]\nmode = off\n")
    try:
        out = run_to_the_end(config)
    finally:
        taken.close()
    assert out.returncode == 1
    assert "Traceback" not in out.stdout + out.stderr
    # twistd logs what the daemon writes to stderr once its logging is set up.
    said = [line for line in (out.stdout + out.stderr).splitlines() if "architect: " in line]
    assert len(said) == 1 and f"cannot listen on 127.0.0.1:{port}" in said[0], said
