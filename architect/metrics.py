"""The daemon's operational record: Prometheus metrics (prometheus-client) and the recent
events the admin monitor shows.

Each daemon has its own `Metrics`, on a registry of its own (never the library's global
one), so several daemons in one process (the tests) keep separate counts. The router hub
and the backend's handler each make one when built, and `tap.py` gives the daemon's
single one to both. Each counter moves at the one place where its event happens: the
registration answers and the submissions stored in `backend/client_io.py`, the workers'
waits, live updates and errors in `router/hub.py`. What is a state rather than an event
(connected agents, queues, units by status) is read when scraped (`admin/collect.py`).

The recent events (a bounded list) and the per-second counts of the last minutes feed the
monitor page's tables and its throughput plot. Pure: no transport, times from the clock.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from architect.protocol import FailureReason

T = TypeVar("T")

# A refusal's label: the failure reason's name (not_qualified, max_units...), not its text.
REASON_NAMES = {
    text: name.lower()
    for name, text in vars(FailureReason).items()
    if name.isupper() and isinstance(text, str)
}

RECENT_EVENTS = 200  # kept for the monitor page
THROUGHPUT_SECONDS = 600  # per-second counts kept, for the plot of the last ten minutes
# Seconds: from a worker's click to the backend's word, fast on loopback, slow past a WAN.
# A commit is often under a millisecond (fsync on a fast disk): finer at the low end.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.registrations = Counter(
            "architect_registrations",
            "Registration answers of the backend, by outcome (agent, reconnected, refused)"
            " and failure reason",
            ["outcome", "reason"],
            registry=r,
        )
        self.submissions = Counter(
            "architect_submissions",
            "Submissions the backend handled, by kind (unit, metadata, onboarding) and outcome"
            " (stored, refused, failed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.registration_seconds = Histogram(
            "architect_registration_seconds",
            "Seconds a worker's /request_agent waited at the router for the backend's answer",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.submission_seconds = Histogram(
            "architect_submission_seconds",
            "Seconds a worker's submission waited at the router until it was kept (or refused)",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.commit_seconds = Histogram(
            "architect_database_commit_seconds",
            "Seconds a database transaction (a group of the backend's reads and writes) took"
            " from its start to its commit",
            registry=r,
            buckets=COMMIT_BUCKETS,
        )
        self.in_flight = 0  # workers' submissions not answered yet (a drain waits for them)
        Gauge(
            "architect_submissions_in_flight",
            "Workers' submissions the router has not answered yet",
            registry=r,
        ).set_function(lambda: self.in_flight)
        self.live_updates = Counter(
            "architect_live_updates",
            "Live updates through the router: in (from browsers, taken), out (to browsers),"
            " dropped (a browser over max_updates_per_second, or a NUL in its update_id)",
            ["direction"],
            registry=r,
        )
        self.browser_errors = Counter(
            "architect_browser_errors", "Error reports of task pages (/log_error)", registry=r
        )
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        # (second, {event: count}) for the last THROUGHPUT_SECONDS seconds that had any.
        self.per_second: deque[tuple[int, dict[str, int]]] = deque()

    # --- what the monitor shows ---

    def _note(self, event: str, **fields: Any) -> None:
        now = self.clock.seconds()
        self.recent.append({"time": now, "event": event, **fields})
        self._count(event, now)

    def _count(self, event: str, now: float) -> None:
        second = int(now)
        if not self.per_second or self.per_second[-1][0] != second:
            self.per_second.append((second, {}))
            while self.per_second and self.per_second[0][0] <= second - THROUGHPUT_SECONDS:
                self.per_second.popleft()
        counts = self.per_second[-1][1]
        counts[event] = counts.get(event, 0) + 1

    def throughput(self, seconds: int, bucket: int) -> list[dict[str, Any]]:
        """Counts of each event in `bucket`-second slices of the last `seconds`, oldest first."""
        now = int(self.clock.seconds())
        first = now - seconds + 1
        slices = [{"start": first + i * bucket} for i in range((seconds + bucket - 1) // bucket)]
        for second, counts in self.per_second:
            if second < first:
                continue
            target = slices[min((second - first) // bucket, len(slices) - 1)]
            for event, n in counts.items():
                target[event] = target.get(event, 0) + n
        return slices

    # --- the backend's events (backend/client_io.py) ---

    def registration_answered(
        self, agent_id: str | None, reason: str | None, reconnected: bool, worker_id: str | None
    ) -> None:
        outcome = "refused" if agent_id is None else "reconnected" if reconnected else "agent"
        label = REASON_NAMES.get(reason, "other") if reason else ""
        self.registrations.labels(outcome, label).inc()
        self._note(
            "registration", outcome=outcome, reason=label, agent_id=agent_id, worker_id=worker_id
        )

    def submission_handled(self, kind: str, outcome: str, agent_id: str, reason: str) -> None:
        self.submissions.labels(kind, outcome).inc()
        self._note("submission", kind=kind, outcome=outcome, agent_id=agent_id, reason=reason)

    # --- the router's events (router/hub.py) ---

    def timed(self, histogram: Histogram, waiting: Deferred[T]) -> Deferred[T]:
        """`waiting` (a worker's request), its wait observed in `histogram` when it ends."""
        started = self.clock.seconds()
        in_flight = histogram is self.submission_seconds
        if in_flight:
            self.in_flight += 1

        def ended(result: T) -> T:
            histogram.observe(self.clock.seconds() - started)
            if in_flight:
                self.in_flight -= 1
            return result

        return waiting.addBoth(ended)

    def database_committed(self, seconds: float, interactions: int) -> None:
        self.commit_seconds.observe(seconds)

    def live_update(self, direction: str) -> None:
        self.live_updates.labels(direction).inc()
        self._count(f"live_{direction}", self.clock.seconds())

    def browser_error(self, agent_id: str, error: str) -> None:
        self.browser_errors.inc()
        self._note("browser_error", agent_id=agent_id, error=error)

    def value(self, name: str, **labels: str) -> float:
        """A sample's value now (0 if never set): for the monitor and the tests."""
        found = self.registry.get_sample_value(name, labels)
        return found if found is not None else 0.0
