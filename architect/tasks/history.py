"""LiveHistory: one agent's live updates, both directions, within the [backend] bounds.

A worker's browser may send live updates for as long as its page is open; kept without
end they would grow the process, the database and every reload answer. So an agent takes
updates from its browser only while its history is within `max_updates` and `max_bytes`
(the task's own updates are always sent, and counted; once one from the browser is
refused, all later ones are: the history is full), and a reloading page gets back the
newest of them within `max_past` and `max_past_bytes`. Sizes: protocol.data_size.
"""

from __future__ import annotations

from typing import Any

import attrs

from architect.config import BackendConfig
from architect.protocol import data_size

_DEFAULTS = BackendConfig()


@attrs.frozen
class LiveLimits:
    max_updates: int = _DEFAULTS.max_live_updates_per_agent
    max_bytes: int = _DEFAULTS.max_live_update_bytes_per_agent
    max_past: int = _DEFAULTS.max_past_live_updates
    max_past_bytes: int = _DEFAULTS.max_past_live_update_bytes

    @classmethod
    def of(cls, config: BackendConfig) -> LiveLimits:
        return cls(
            max_updates=config.max_live_updates_per_agent,
            max_bytes=config.max_live_update_bytes_per_agent,
            max_past=config.max_past_live_updates,
            max_past_bytes=config.max_past_live_update_bytes,
        )


class LiveHistory:
    def __init__(self, limits: LiveLimits) -> None:
        self.limits = limits
        self.updates: list[dict[str, Any]] = []  # the agent's past_live_updates
        self.size = 0  # their data_size, summed
        self.refused = 0  # updates from the browser not kept

    def add(self, update: dict[str, Any], size: int | None = None) -> None:
        """Keep `update` (its data_size, if the caller has it already)."""
        self.updates.append(update)
        self.size += data_size(update) if size is None else size

    def admits(self, size: int) -> bool:
        """Whether an update of `size` from the browser may be kept; once one is refused,
        the history is full and none is."""
        limits = self.limits
        fits = len(self.updates) < limits.max_updates and self.size + size <= limits.max_bytes
        if fits and not self.refused:
            return True
        self.refused += 1
        return False

    def newest(self) -> list[dict[str, Any]]:
        """What a reloading page gets: the newest updates within both bounds, in order."""
        limits = self.limits
        chosen: list[dict[str, Any]] = []
        size = 0
        for update in reversed(self.updates[-limits.max_past :]):
            size += data_size(update)
            if size > limits.max_past_bytes:
                break
            chosen.append(update)
        chosen.reverse()
        return chosen
