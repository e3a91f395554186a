"""Values as a log line shows them, cut short: what a worker sends may be as large as a
body (a megabyte), and a log line is for a person to read."""

from __future__ import annotations

import re

LOG_VALUE_CHARS = 2_000

# What a log line cannot hold: control characters (a newline would forge another line)
# and lone surrogates (not UTF-8: the log file's writer fails on them, with a traceback).
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with each character a log line cannot hold escaped, as repr writes it."""
    return UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)


def cut(text: str, limit: int = LOG_VALUE_CHARS) -> str:
    """`text`, or its first `limit` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def capped(value: object, limit: int = LOG_VALUE_CHARS) -> str:
    """The repr of `value` (one line: control characters escaped), cut short."""
    return cut(repr(value), limit)
