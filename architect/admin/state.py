"""The monitor page's snapshot (`GET /state` on the admin listener), as JSON.

Units and agents by status (the database), the agents at work with their worker, status,
whether their page holds a socket, their last heartbeat and live room (the backend's and
the router's view, each where this process has it), the recent events and the throughput
of the last minutes (architect/metrics.py), and the settings the controls change.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from architect.admin.collect import DaemonCollector
from architect.admin.parts import DaemonParts
from architect.metrics import Metrics
from architect.run_settings import SETTINGS

MAX_AGENTS = 1000  # rows the page gets at most
REMEMBERED_AGENTS = 10_000  # agents whose worker is remembered after they finished
RECENT_SHOWN = 50
PLOT_SECONDS, PLOT_BUCKET = 300, 10  # the plot: the last five minutes, in ten-second bars


class MonitorState:
    def __init__(self, parts: DaemonParts, metrics: Metrics, collector: DaemonCollector) -> None:
        self.parts = parts
        self.metrics = metrics
        self.collector = collector
        self.worker_names: dict[str, str] = {}  # worker id -> name (never changes)
        # agent id -> (worker id, name), kept once the backend no longer holds the agent
        self.agent_workers: dict[str, tuple[str, str | None]] = {}

    async def _name(self, worker_id: str) -> str | None:
        name = self.worker_names.get(worker_id)
        database = self.parts.database
        if name is None and database is not None and worker_id.isdigit():
            worker = await database.get_worker(int(worker_id))
            if worker is not None:
                name = self.worker_names[worker_id] = worker.worker_name
        return name

    def _remember(self, agent_id: str, worker_id: str, name: str | None) -> None:
        if agent_id not in self.agent_workers:
            if len(self.agent_workers) >= REMEMBERED_AGENTS:
                del self.agent_workers[next(iter(self.agent_workers))]
            self.agent_workers[agent_id] = (worker_id, name)

    def _rooms(self) -> dict[str, Hashable]:
        runner = self.parts.runner
        if runner is None or runner.live is None:
            return {}
        return {
            agent.agent_id: key
            for key, assignment in runner.live.assignments.items()
            for agent in assignment.agents
        }

    async def snapshot(self) -> dict[str, Any]:
        await self.collector.refresh()
        hub, pool = self.parts.hub, self.parts.pool
        rows: dict[str, dict[str, Any]] = {}
        if pool is not None:
            rooms = self._rooms()
            for agent in list(pool.registry.agents.values())[:MAX_AGENTS]:
                room = rooms.get(agent.agent_id)
                name = await self._name(agent.worker_id)
                self._remember(agent.agent_id, agent.worker_id, name)
                rows[agent.agent_id] = {
                    "agent_id": agent.agent_id,
                    "worker_id": agent.worker_id,
                    "worker": name,
                    "status": agent.status,
                    "kind": agent.kind,
                    "room": None if room is None else str(room),
                }
        if hub is not None:
            for record in list(hub.agents.records.values())[:MAX_AGENTS]:
                row = rows.get(record.agent_id)
                if row is None:
                    if len(rows) >= MAX_AGENTS:
                        continue
                    row = rows[record.agent_id] = {"agent_id": record.agent_id}
                    row["status"] = record.status
                    worker_id, name = self.agent_workers.get(record.agent_id, (None, None))
                    row["worker_id"], row["worker"] = worker_id, name
                row["router_status"] = record.status
                row["connected"] = record.link is not None
                row["last_heartbeat"] = record.last_heartbeat
        return {
            "now": self.metrics.clock.seconds(),
            "runs": {"router": hub is not None, "backend": pool is not None},
            "task_run": pool.task_run.name if pool is not None else None,
            "backend_connected": hub.backend is not None if hub is not None else None,
            "draining": hub.draining if hub is not None else False,
            "units": self.collector.units,
            "agents_by_status": self.collector.agents,
            "agents": list(rows.values()),
            "recent": list(self.metrics.recent)[-RECENT_SHOWN:][::-1],
            "throughput": self.metrics.throughput(PLOT_SECONDS, PLOT_BUCKET),
            "settings": (
                {key: getattr(pool.settings, key) for key in SETTINGS} if pool is not None else None
            ),
        }
