"""A load run: N bots at once play a task through, each from registration to its
submission, with disconnects and reloads injected into some; with a duration, each
of the N places takes a new worker as soon as its last one is done, until the time is up.

What each worker did (its agents, the live updates it sent and got, its submission,
what went wrong) is kept as a `WorkerRecord`, for verify.py to check against the
database and report.py to sum up.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.web.client import HTTPConnectionPool

from architect.protocol import Status
from architect.testing.bots import Bot, BotError
from architect.testing.waits import WaitTimeout, with_timeout
from architect.testing.worker import (
    DEFAULT_TIMEOUT,
    AgentView,
    Disruption,
    SimulatedWorker,
)

COMPLETED = "completed"  # the bot submitted, and the submission was acknowledged
REFUSED = "refused"  # the registration (or the onboarding) was refused
FAILED = "failed"  # anything else: what went wrong is its `problem`


@attrs.define
class AgentRecord:
    """One agent a worker was given, as its page saw it."""

    agent_id: str
    onboarding: bool
    acknowledged: bool  # its submission (unit or onboarding answers) was answered 200
    must_reach_task: set[str]  # ids of live updates it sent while working
    received: set[str]  # ids of client-bound updates it got (live, or replayed)
    heard_the_end: bool  # its page heard a final status: it got all that came before

    @classmethod
    def of(cls, view: AgentView) -> AgentRecord:
        return cls(
            agent_id=view.agent_id,
            onboarding=view.is_onboarding,
            acknowledged=view.acknowledged,
            must_reach_task={
                update_id
                for update_id, sent in view.sent.items()
                if sent.while_active and not sent.abandoned
            },
            received=set(view.received_ids),
            heard_the_end=view.ended,
        )


@attrs.define
class WorkerRecord:
    name: str
    outcome: str = FAILED
    problem: str | None = None  # for a failed worker: what went wrong, in one line
    refusal: str | None = None
    agents: list[AgentRecord] = attrs.field(factory=list)
    timings: list[tuple[str, float]] = attrs.field(factory=list)
    disruption: str | None = None  # "drop" or "reload", once it was done
    reconnections: int = 0
    repeats: int = 0
    duplicates: list[str] = attrs.field(factory=list)
    registered: bool = False  # its registration was answered (accepted or refused)


def problem_of(error: BaseException) -> str:
    """One line saying what went wrong, without the worker's name."""
    text = str(error) or type(error).__name__
    text = re.sub(r"^worker \S+( \(agent \S+\))?: ", "", text)
    if not isinstance(error, WaitTimeout | BotError) and type(error).__name__ not in text:
        text = f"{type(error).__name__}: {text}"
    return text.splitlines()[0][:500]


def problem_kind(problem: str) -> str:
    """What problems of the same kind share: the text before its details, ids blanked."""
    kind = re.split(r" \(|; ", problem, maxsplit=1)[0]
    return re.sub(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", "…", kind)


class BotRun:
    """`workers` places, each playing `bot` with a worker after another."""

    def __init__(
        self,
        reactor: Any,
        url: str,
        bot: Bot,
        *,
        workers: int,
        duration: float | None = None,
        disconnect_rate: float = 0.0,
        think: float = 0.0,
        seed: int = 0,
        worker_timeout: float = 300.0,
        wait_timeout: float = DEFAULT_TIMEOUT,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        self.reactor = reactor
        self.url = url
        self.bot = bot
        self.places = workers
        self.duration = duration
        self.disconnect_rate = disconnect_rate
        self.think = think
        self.random = random.Random(seed)
        self.worker_timeout = worker_timeout
        self.wait_timeout = wait_timeout
        self.pool = pool
        self.records: list[WorkerRecord] = []
        self.active: set[SimulatedWorker] = set()
        self.started_at = 0.0
        self.ended_at = 0.0
        self.extra = 0  # workers started after the time was up, for partners left waiting
        self._count = 0

    # --- what it has done so far (the progress line) ---

    @property
    def elapsed(self) -> float:
        end = self.ended_at or time.monotonic()
        return end - self.started_at if self.started_at else 0.0

    def fraction(self) -> float:
        if self.duration:
            return self.elapsed / self.duration
        return len(self.records) / max(1, self._count or self.places)

    def line(self) -> str:
        by = {COMPLETED: 0, REFUSED: 0, FAILED: 0}
        for record in self.records:
            by[record.outcome] += 1
        return (
            f"{self.elapsed:5.0f} s  at work {len(self.active):4d}  completed {by[COMPLETED]}"
            f"  refused {by[REFUSED]}  failed {by[FAILED]}"
        )

    # --- the run ---

    async def run(self) -> list[WorkerRecord]:
        self.started_at = time.monotonic()
        places = [Deferred.fromCoroutine(self._place(n)) for n in range(1, self.places + 1)]
        await gatherResults(places, consumeErrors=True)
        self.ended_at = time.monotonic()
        return self.records

    def _another(self, first: bool) -> bool:
        """Whether a place that is free starts one more worker."""
        if first:
            return True
        if self.duration is not None and self.elapsed < self.duration:
            return True
        # Time is up; but a worker waiting for its partners needs someone to come, unless
        # one is on the way (not registered yet).
        waiting = any(worker.status == Status.WAITING for worker in self.active)
        coming = any(worker.agent is None and not worker.refusals for worker in self.active)
        if waiting and not coming and self.extra < self.places:
            self.extra += 1
            return True
        return False

    async def _place(self, place: int) -> None:
        runs = 0
        while self._another(runs == 0):
            runs += 1
            self._count += 1
            self.records.append(await self._one(f"bot{place}-{runs}"))

    def _disruption(self) -> Disruption | None:
        if self.random.random() >= self.disconnect_rate:
            return None
        kind = self.random.choice(("drop", "reload"))
        return Disruption(kind, self.random.randint(1, 4), self.random.uniform(0.2, 2.0))

    def _pace(self) -> Callable[[], float] | None:
        if self.think <= 0:
            return None
        rng = random.Random(self.random.random())
        return lambda: rng.uniform(0, 2 * self.think)

    async def _one(self, name: str) -> WorkerRecord:
        worker = SimulatedWorker(
            self.url,
            name,
            reactor=self.reactor,
            pool=self.pool,
            timeout=self.wait_timeout,
            pace=self._pace(),
            disruption=self._disruption(),
        )
        record = WorkerRecord(name)
        self.active.add(worker)
        playing = Deferred.fromCoroutine(self._play(worker, record))
        try:
            record.outcome = await with_timeout(
                playing,
                self.reactor,
                self.worker_timeout,
                lambda: f"did not finish within {self.worker_timeout:g} s (it was {worker.doing})",
            )
        except Exception as e:
            record.outcome = FAILED
            record.problem = problem_of(e)
        finally:
            self.active.discard(worker)
            try:
                await worker.close()
            except Exception as e:  # a page that cannot even close: said, not raised
                record.problem = record.problem or problem_of(e)
        record.agents = [AgentRecord.of(view) for view in worker.agents]
        record.timings = worker.timings
        trouble = worker.disruption
        record.disruption = trouble.kind if trouble is not None and trouble.done else None
        record.reconnections = worker.reconnections
        record.repeats = worker.repeats
        record.duplicates = list(worker.duplicates)
        record.registered = record.registered or bool(worker.agents or worker.refusals)
        if worker.refusals and record.outcome == REFUSED:
            record.refusal = worker.refusals[-1]
        return record

    async def _play(self, worker: SimulatedWorker, record: WorkerRecord) -> str:
        await worker.open()
        await worker.register()
        record.registered = True
        if worker.is_refused:
            return REFUSED
        await self.bot(worker)
        if worker.is_refused:
            return REFUSED  # e.g. its onboarding failed
        view = worker.agent
        if view is None or view.is_onboarding or not view.acknowledged:
            raise BotError("the bot returned without submitting (a page that never submits)")
        # Its page stays open until it hears the end, as a browser's would: all the task
        # sent it before then has come.
        await worker.wait_until_ended()
        return COMPLETED
