"""Log lines that a flood cannot multiply: one line per kind of event per interval.

A client sending a million bad packets must not write a million log lines (the
disk, and whoever reads the log, are shared with every other worker).
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


@attrs.define
class _Kind:
    next_line_at: float = 0.0
    unlogged: int = 0


class RateLimitedLog:
    """`warn(kind, ...)` logs at most once per `every` seconds for each `kind`, saying how
    many more of that kind came meanwhile."""

    def __init__(self, log: Logger, clock: IReactorTime, every: float = 10.0) -> None:
        self.log = log
        self.clock = clock
        self.every = every
        self.kinds: dict[str, _Kind] = {}

    def warn(self, kind: str, format: str, **fields: Any) -> None:
        state = self.kinds.setdefault(kind, _Kind())
        now = self.clock.seconds()
        if now < state.next_line_at:
            state.unlogged += 1
            return
        if state.unlogged:
            format += " ({unlogged} more like it in the last {every:.0f} s)"
            fields.update(unlogged=state.unlogged, every=self.every)
        state.unlogged = 0
        state.next_line_at = now + self.every
        self.log.warn(format, **fields)
