"""Structured logs: `[log] format = json` writes one JSON object per line, the fields
named; the daemon gives it to twistd as its application's log observer."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.application.service import Application
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure

from architect.log_json import JsonLineObserver, event_record
from architect.tap import _Daemon

TWISTD = str(Path(sys.executable).parent / "twistd")


def logged(emit: object) -> list[dict[str, object]]:
    out = io.StringIO()
    log = Logger(namespace="architect.test", observer=JsonLineObserver(out))
    assert callable(emit)
    emit(log)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_one_object_per_line_with_the_fields_named() -> None:
    (line,) = logged(
        lambda log: log.warn(
            "agent {agent_id} of worker {worker} is {status}",
            agent_id="a1",
            worker="alice",
            status="disconnect",
        )
    )
    assert line["level"] == "warn"
    assert line["namespace"] == "architect.test"
    assert line["message"] == "agent a1 of worker alice is disconnect"
    assert (line["agent_id"], line["worker"], line["status"]) == ("a1", "alice", "disconnect")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(line["time"]))
    assert not [key for key in line if key.startswith("log_")]


def test_fields_that_are_not_json_are_their_repr_and_a_line_stays_one_line() -> None:
    (line,) = logged(
        lambda log: log.info(
            "odd {thing} {nan}\nsecond line", thing=object(), nan=float("nan"), n=3
        )
    )
    assert str(line["thing"]).startswith("<object object")
    assert line["nan"] == "nan"
    assert line["n"] == 3
    assert line["message"] == f"odd {line['thing']} nan\nsecond line"


def test_a_failure_brings_its_traceback() -> None:
    def emit(log: Logger) -> None:
        try:
            raise ValueError("broken hook")
        except ValueError:
            log.failure("the hook of {agent_id} failed", Failure(), agent_id="a2")

    (line,) = logged(emit)
    assert line["level"] == "critical"
    assert "ValueError: broken hook" in str(line["failure"])
    assert line["agent_id"] == "a2"


def test_an_event_without_time_or_level() -> None:
    record = event_record({"log_format": "plain", "x": [1, 2]})
    assert record["time"] is None and record["message"] == "plain" and record["x"] == [1, 2]


@pytest.mark.parametrize("json_observer", [True, False])
def test_the_daemon_gives_twistd_its_observer(json_observer: bool) -> None:
    """twistd starts logging after makeService, to its application's observer if it has
    one (the subprocess test below runs the whole of it)."""
    daemon = _Daemon()
    if json_observer:
        daemon.log_observer = JsonLineObserver(io.StringIO())
    application = Application("architect")
    daemon.setServiceParent(application)
    observer = application.getComponent(ILogObserver, None)
    assert (observer is daemon.log_observer) if json_observer else observer is None


@pytest.mark.slow
def test_twistd_writes_json_lines(tmp_path: Path) -> None:
    ini = tmp_path / "router.ini"
    ini.write_text(
        "[router]\nlisten = tcp:0:interface=127.0.0.1\ntrust_loopback = on\n"
        "[backend]\nmode = off\n[log]\nformat = json\n"
    )
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "architect", "--config", str(ini)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[dict[str, object]] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            raw = process.stdout.readline()
            if not raw:
                break
            lines.append(json.loads(raw))  # every line is one JSON object
            if "router listening on" in str(lines[-1]["message"]):
                break
    finally:
        process.terminate()
        process.wait(timeout=10)
    listening = [line for line in lines if "router listening on" in str(line["message"])]
    assert listening, lines
    assert listening[0]["namespace"] == "architect.router.service"
    assert str(listening[0]["url"]).startswith("http://127.0.0.1:")
