"""Agent: one worker's seat in one unit, as the task code sees it.

An agent's packets leave through an *outlet* (a callable taking a Packet) that
the ClientIOHandler gives it; the agent knows no channel. Packets made before
the agent has an outlet are kept and sent, in order, when it gets one (so a new
agent's first status follows its `agent_details`).

Live data from the browser can be pulled (`act(timeout)`) or pushed
(`on_live_update`). Both directions are kept in `past_live_updates` so a worker
who reloads the page sees the conversation so far (its newest part: tasks/history.py
has the bounds, past which the browser's updates are dropped). Listeners (the worker pool
keeps its database in step through them) hear of every status change and
every live update taken, in either direction.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from architect.copies import json_copy
from architect.lifecycle import ACTIVE, AgentKind
from architect.protocol import (
    CLIENT_BOUND_LIVE_UPDATE,
    MEPHISTO_BOUND_LIVE_UPDATE,
    UPDATE_STATUS,
    Packet,
    Status,
    data_size,
)
from architect.recent import RecentKeys
from architect.tasks.history import LiveHistory, LiveLimits

log = Logger()

Outlet = Callable[[Packet], None]
LiveUpdateCallback = Callable[["Agent", dict[str, Any]], object]
StatusListener = Callable[["Agent", str, str], None]  # agent, old status, new status
# agent, packet type (client_bound_live_update or mephisto_bound_live_update), the update
LiveUpdateListener = Callable[["Agent", str, dict[str, Any]], None]


class AgentGone(Exception):
    """The agent left the task (completed, disconnected, expired...) while the task code waited."""

    def __init__(self, agent_id: str, status: str) -> None:
        super().__init__(f"agent {agent_id} is {status}")
        self.agent_id = agent_id
        self.status = status


class Agent:
    def __init__(
        self,
        clock: IReactorTime,
        agent_id: str,
        worker_id: str,
        init_task_data: dict[str, Any],
        registration_id: str | None = None,
        kind: str = AgentKind.UNIT,
        remembered_update_ids: int = 1000,
        max_inbox: int = 10_000,
        live_limits: LiveLimits | None = None,
    ) -> None:
        self.clock = clock
        self.agent_id = agent_id
        self.worker_id = worker_id
        self.init_task_data = init_task_data
        self.registration_id = registration_id
        self.kind = kind  # AgentKind: a unit agent, or an onboarding agent (no unit)
        self.status = Status.NONE
        self.submitted = False
        # A status the database got with what brought it (a unit submission's transaction):
        # the recorder does not write it again.
        self.stored_status: str | None = None
        self.history = LiveHistory(live_limits or LiveLimits())
        self.past_live_updates: list[dict[str, Any]] = self.history.updates
        self.on_live_update: LiveUpdateCallback | None = None
        self.max_inbox = max_inbox
        self._status_listeners: list[StatusListener] = []
        self._live_update_listeners: list[LiveUpdateListener] = []
        self._seen_update_ids = RecentKeys(remembered_update_ids)
        self._inbox: deque[dict[str, Any]] = deque()
        self._waiting: deque[tuple[Deferred[dict[str, Any] | None], IDelayedCall | None]] = deque()
        self._outlet: Outlet | None = None
        self._unsent: list[Packet] = []

    def __repr__(self) -> str:
        return f"<Agent {self.agent_id} worker={self.worker_id} status={self.status!r}>"

    @property
    def is_onboarding(self) -> bool:
        return self.kind == AgentKind.ONBOARDING

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    # --- the way out ---

    def set_outlet(self, outlet: Outlet) -> None:
        self._outlet = outlet
        unsent, self._unsent = self._unsent, []
        for packet in unsent:
            outlet(packet)

    def _send(self, packet: Packet) -> None:
        if self._outlet is None:
            self._unsent.append(packet)
        else:
            self._outlet(packet)

    # --- status ---

    def add_status_listener(self, listener: StatusListener) -> None:
        self._status_listeners.append(listener)

    def set_status(self, status: str, push: bool = True) -> bool:
        """Change the status; push it unless it came from the router. True if it changed."""
        if status not in Status.ALL:
            raise ValueError(f"unknown status {status!r}")
        old = self.status
        if old == status:
            return False
        self.status = status
        if push:
            self.push_status()
        if status not in ACTIVE:
            self._fail_waiters(AgentGone(self.agent_id, status))
        for listener in list(self._status_listeners):
            listener(self, old, status)
        return True

    def add_live_update_listener(self, listener: LiveUpdateListener) -> None:
        self._live_update_listeners.append(listener)

    def _tell_live_update(self, packet_type: str, update: dict[str, Any]) -> None:
        for listener in list(self._live_update_listeners):
            try:
                listener(self, packet_type, json_copy(update))
            except Exception:
                log.failure(
                    "a live update listener of agent {agent_id} failed", agent_id=self.agent_id
                )

    def push_status(self) -> None:
        self._send(Packet(UPDATE_STATUS, self.agent_id, {"status": self.status}))

    # --- live data to the browser ---

    def observe(self, data: dict[str, Any]) -> str:
        """Send live data to the browser, with a fresh `update_id`; returns that id."""
        update = json_copy(data)
        update_id = str(uuid.uuid4())
        update["update_id"] = update_id
        self.history.add(update)
        self._send(Packet(CLIENT_BOUND_LIVE_UPDATE, self.agent_id, json_copy(update)))
        self._tell_live_update(CLIENT_BOUND_LIVE_UPDATE, update)
        return update_id

    send_live_update = observe

    # --- live data from the browser ---

    def receive_live_update(self, data: dict[str, Any]) -> bool:
        """Live data from the browser; False (and ignored) if its update_id was seen already,
        or if the agent's live history is full (neither kept nor given to the task)."""
        update_id = data.get("update_id")
        if update_id is not None and not self._seen_update_ids.add(_hashable(update_id)):
            return False
        size = data_size(data)
        if not self.history.admits(size):
            if self.history.refused == 1:
                self._say_history_full()
            return False
        self.history.add(json_copy(data), size)
        self._tell_live_update(MEPHISTO_BOUND_LIVE_UPDATE, data)
        if self.on_live_update is not None:
            try:
                self.on_live_update(self, data)
            except Exception:
                log.failure(
                    "the live update callback of agent {agent_id} failed", agent_id=self.agent_id
                )
            return True
        self.queue_for_act(data)
        return True

    def _say_history_full(self) -> None:
        limits = self.history.limits
        log.warn(
            "the live history of agent {agent_id} is full ({count} updates, {size} bytes;"
            " [backend] max_live_updates_per_agent = {max_count},"
            " max_live_update_bytes_per_agent = {max_size}): its browser's updates are"
            " dropped from now on",
            agent_id=self.agent_id,
            count=len(self.history.updates),
            size=self.history.size,
            max_count=limits.max_updates,
            max_size=limits.max_bytes,
        )

    def queue_for_act(self, data: dict[str, Any]) -> None:
        """Hand live data to the task code's `act()`: a waiting call, or the inbox."""
        while self._waiting:
            deferred, timer = self._waiting.popleft()
            if timer is not None and timer.active():
                timer.cancel()
            if not deferred.called:
                deferred.callback(data)
                return
        if len(self._inbox) >= self.max_inbox:
            self._inbox.popleft()
            log.warn(
                "agent {agent_id}: {limit} live updates not taken by act(); dropped the oldest",
                agent_id=self.agent_id,
                limit=self.max_inbox,
            )
        self._inbox.append(data)

    def act(self, timeout: float | None = None) -> Deferred[dict[str, Any] | None]:
        """The next live update from the browser; None if none comes within `timeout` seconds.

        Fails with AgentGone if the agent leaves the task first.
        """
        if self._inbox:
            ready: Deferred[dict[str, Any] | None] = succeed(self._inbox.popleft())
            return ready
        if not self.is_active:
            return fail(AgentGone(self.agent_id, self.status))
        deferred: Deferred[dict[str, Any] | None] = Deferred()
        timer = None
        if timeout is not None:
            timer = self.clock.callLater(timeout, self._act_timed_out, deferred)
        self._waiting.append((deferred, timer))
        return deferred

    def _act_timed_out(self, deferred: Deferred[dict[str, Any] | None]) -> None:
        self._waiting = deque(w for w in self._waiting if w[0] is not deferred)
        if not deferred.called:
            deferred.callback(None)

    def _fail_waiters(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        for deferred, timer in waiting:
            if timer is not None and timer.active():
                timer.cancel()
            if not deferred.called:
                deferred.errback(error)

    # --- a restart of the backend ---

    def restore_live_updates(self, updates: list[tuple[str, dict[str, Any]]]) -> None:
        """Take back the live updates (packet type, data) an earlier backend logged, in order:
        a reloading page gets them, and a browser update seen before is not taken twice."""
        for packet_type, data in updates:
            self.history.add(json_copy(data))
            update_id = data.get("update_id")
            if packet_type == MEPHISTO_BOUND_LIVE_UPDATE and update_id is not None:
                self._seen_update_ids.add(_hashable(update_id))

    # --- reconnection ---

    def reconnect_task_data(self) -> dict[str, Any]:
        """What a reloading browser gets: the task data and the newest live updates so far
        (within [backend] max_past_live_updates and max_past_live_update_bytes)."""
        data = json_copy(self.init_task_data)
        data["past_live_updates"] = json_copy(self.history.newest())
        return data


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else repr(value)
