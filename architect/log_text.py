"""Values as a log line shows them, cut short: what a worker sends may be as large as a
body (a megabyte), and a log line is for a person to read."""

from __future__ import annotations

LOG_VALUE_CHARS = 2_000


def cut(text: str, limit: int = LOG_VALUE_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def capped(value: object, limit: int = LOG_VALUE_CHARS) -> str:
    """The repr of `value` (one line: control characters escaped), cut short."""
    return cut(repr(value), limit)
