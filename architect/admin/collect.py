"""The metrics that are states, not events: read from the daemon's parts when scraped.

Counters and histograms move where their events happen (architect/metrics.py); these
gauges are computed at each scrape instead, so no code path has to keep them in step:
the router's connected agents and agents by status, its backend link and queues; the
backend's agents at work; the task run's units and agents by status, read from the
database just before the scrape (`refresh`), since a collector cannot wait for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from architect.admin.parts import DaemonParts


class DaemonCollector(Collector):
    def __init__(self, parts: DaemonParts) -> None:
        self.parts = parts
        self.units: dict[str, int] = {}
        self.agents: dict[str, int] = {}

    async def refresh(self) -> None:
        """Read the task run's counts from the database (before a scrape)."""
        pool, database = self.parts.pool, self.parts.database
        if pool is None or database is None:
            return
        run_id = pool.task_run.id
        self.units = await database.count_units_by_status(run_id)
        self.agents = await database.count_agents_by_status(run_id)

    def describe(self) -> list[Metric]:
        return []  # names are not checked against the registry's: they are our own

    def collect(self) -> Iterator[Metric]:
        hub = self.parts.hub
        if hub is not None:
            yield _gauge(
                "architect_connected_agents",
                "Agents whose page holds a socket to the router now",
                len(hub.link_agents),
            )
            by_status = GaugeMetricFamily(
                "architect_router_agents",
                "Agents the router keeps (at work, or finished within status_retention), by status",
                labels=["status"],
            )
            counts = Counter(record.status for record in hub.agents.records.values())
            for status, n in sorted(counts.items()):
                by_status.add_metric([status], n)
            yield by_status
            yield _gauge(
                "architect_backend_connected",
                "1 while a backend is linked to the router",
                int(hub.backend is not None),
            )
            yield _gauge(
                "architect_backend_queue_packets",
                "Packets the router holds for its backend (while it is away)",
                len(hub.backend_queue),
            )
            yield _gauge(
                "architect_backend_queue_bytes",
                "Bytes (as JSON) of the packets the router holds for its backend",
                hub.backend_queue.size,
            )
            yield _gauge(
                "architect_pending_requests",
                "Workers' registrations and onboarding submissions waiting for the backend",
                len(hub.requests),
            )
            if hub.journal is not None:
                yield _gauge(
                    "architect_journal_pending",
                    "Submissions in the router's journal its backend has not confirmed",
                    len(hub.journal.pending),
                )
            yield _gauge("architect_draining", "1 while the daemon stops", int(hub.draining))
        pool = self.parts.pool
        if pool is not None:
            yield _gauge(
                "architect_agents_at_work",
                "Agents the backend holds (active: not final)",
                len(pool.registry.agents),
            )
            yield _by_status("architect_units", "The task run's units by status", self.units)
            yield _by_status("architect_agents", "The task run's agents by status", self.agents)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _by_status(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status, n in sorted(counts.items()):
        family.add_metric([status], n)
    return family
