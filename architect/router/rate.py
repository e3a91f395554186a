"""TokenBucket: at most `rate` events a second on average, `burst` at once. Time is given
by the caller (the hub's injected clock), so it is tested with task.Clock."""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one: whether the event is within the rate."""
        elapsed = max(0.0, now - self.updated)  # the wall clock may step back
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
