"""The progress line of a bot run, on stderr: redrawn in place on a terminal, a plain line
every few seconds otherwise (a CI log)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24
LOG_EVERY = 10.0  # seconds between lines when stderr is not a terminal


class Progress:
    """Shows `line()` (what the run has done) with a bar of `fraction()`."""

    def __init__(self, out: TextIO, fraction: Callable[[], float], line: Callable[[], str]) -> None:
        self.out = out
        self.fraction = fraction
        self.line = line
        self.on_terminal = out.isatty()
        self._last_logged = 0.0
        self._width = 0

    def show(self) -> None:
        done = min(1.0, max(0.0, self.fraction()))
        filled = int(done * BAR_WIDTH)
        text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:4.0%} {self.line()}"
        if self.on_terminal:
            padding = " " * max(0, self._width - len(text))
            self.out.write("\r" + text + padding)
            self._width = len(text)
        elif time.monotonic() - self._last_logged >= LOG_EVERY:
            self._last_logged = time.monotonic()
            self.out.write(text + "\n")
        self.out.flush()

    def finish(self) -> None:
        self._last_logged = 0.0
        self.show()
        if self.on_terminal:
            self.out.write("\n")
            self.out.flush()
