"""Structured logs (`[log] format = json`): one JSON object per line, for journald and log
shippers, in place of twistd's text lines.

Each line holds `time` (ISO 8601, UTC), `level`, `namespace` (the module that logged),
`message` (the event's text, as the text format writes it), the event's own fields that
are plain JSON (`agent_id`, `worker_id`, `status`, ...; a value that is not is written as
its repr, cut short), and, for a logged failure, `failure` (its traceback). Twisted's own
bookkeeping fields (`log_*`) are left out.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from twisted.logger import ILogObserver, LogEvent, formatEvent
from zope.interface import implementer

from architect.log_text import capped

FIELD_CHARS = 500  # a field that is not plain JSON is written as its repr, cut to this


def _plain(value: Any) -> Any:
    """The value if it is plain JSON (as written: no NaN), else its repr, cut short."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return capped(value, FIELD_CHARS)
    return value


def event_record(event: LogEvent) -> dict[str, Any]:
    """The JSON object of one log event."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": (
            datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
            if isinstance(when, int | float)
            else None
        ),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace"),
        "message": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in record or key in ("format", "message"):
            continue
        record[key] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["failure"] = failure.getTraceback()
        except Exception:  # a failure that cannot print itself still leaves its line
            record["failure"] = capped(failure, FIELD_CHARS)
    return record


@implementer(ILogObserver)
class JsonLineObserver:
    """Writes each event as one line of JSON to `out`, flushed."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        line = json.dumps(event_record(event), ensure_ascii=False, separators=(",", ":"))
        self.out.write(line + "\n")
        self.out.flush()


def twistd_output(twistd_options: Any) -> TextIO:
    """Where twistd would write its text logs, from its own options: standard output
    with `--logfile=-` or `-n` without `--logfile`, else the file (default twistd.log)."""
    logfile = twistd_options.get("logfile") if twistd_options is not None else "-"
    nodaemon = twistd_options.get("nodaemon") if twistd_options is not None else True
    if logfile == "-" or (not logfile and nodaemon):
        return sys.stdout
    return open(logfile or "twistd.log", "a", encoding="utf-8")
