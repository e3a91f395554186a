"""A graceful stop (SIGTERM: twistd stops the daemon's services): the drain that comes first.

1. The router takes no new registration or onboarding submission: `503` with
   `Retry-After` (`router/errors.Draining`), so pages ask the next process. Submissions,
   live updates and heartbeats are still taken.
2. What is under way is answered: the registrations the backend was asked (while one is
   connected: without one they could never be), and the workers' submissions.
3. What is held for the backend is written: the backend's status and live-update writes
   are committed (a separate router's submissions are on disk in its journal already).
4. The agents' sockets are closed with 1012 (service restart): their pages connect again,
   to the next process; the connection events waiting for the backend (these closes too)
   are sent to it.

All of it within `[router] drain_timeout` seconds (keep systemd's `TimeoutStopSec` above
it); then the services stop as before, the backend first, the router last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from architect.admin.parts import DaemonParts
from architect.protocol import CloseCode

log = Logger()

STEP = 0.05  # seconds between looks at what is still under way
CLOSES_WAIT = 1.0  # seconds the closing handshakes of agents' sockets may take


async def _until(clock: IReactorTime, done: Callable[[], bool], deadline: float) -> bool:
    while not done():
        if clock.seconds() >= deadline:
            return False
        await deferLater(clock, STEP)
    return True


async def drain(parts: DaemonParts, clock: IReactorTime, timeout: float) -> None:
    deadline = clock.seconds() + timeout
    hub, pool = parts.hub, parts.pool
    if hub is not None:
        hub.draining = True

        def answered() -> bool:
            waiting = len(hub.requests) if hub.backend is not None else 0
            return waiting == 0 and hub.metrics.in_flight == 0

        if not answered():
            log.info(
                "stopping: waiting for {n} requests and {m} submissions under way",
                n=len(hub.requests),
                m=hub.metrics.in_flight,
            )
        if not await _until(clock, answered, deadline):
            log.warn(
                "stopping: [router] drain_timeout ({t} s) ran out with {n} requests and {m}"
                " submissions unanswered",
                t=timeout,
                n=len(hub.requests),
                m=hub.metrics.in_flight,
            )
    if pool is not None:
        settled: Deferred[Any] = pool.settled()
        ended = settled.called
        settled.addBoth(lambda _: None)
        if not ended:
            await _until(clock, lambda: settled.called, deadline)
    if hub is not None:
        links = list(hub.link_agents)
        for link in links:
            link.close(CloseCode.SERVICE_RESTART)
        if links:
            log.info("stopping: closed {n} agent sockets (1012: connect again)", n=len(links))
        # Their closes are connection events: wait (briefly) for them, then send what
        # waits for the backend now, not at the next batch the stopping router won't send.
        soon = min(deadline, clock.seconds() + CLOSES_WAIT)
        await _until(clock, lambda: not hub.link_agents, soon)
        hub.send_events_now()
