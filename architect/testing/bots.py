"""Scripted bots: how a simulated worker plays a task.

A task module may define a `bot` hook, in the spirit of oTree's `PlayerBot`:

    async def bot(worker):
        # the worker is registered: an agent (maybe onboarding first)
        if worker.is_onboarding:
            await worker.submit_onboarding({"answers": {...}})
        await worker.submit({"label": worker.random.choice(LABELS)})

`architect bots` plays any task with it, and a test can too (`TaskDaemon.play`). The
worker it gets is registered and has an agent; it plays the task through to its
submission (the run checks that it did). `worker.random` is seeded by the worker's
name, for choices that differ between bots and stay the same from run to run.

A task without the hook gets `default_bot`: it submits `{"bot": true}`, opening the live
socket first for a task that has one; it cannot pass an onboarding.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING

from architect.tasks.bot import BotError
from architect.tasks.definition import LIVE, REMOTE_PROCEDURE, TaskDefinition

if TYPE_CHECKING:
    from architect.testing.worker import SimulatedWorker

Bot = Callable[["SimulatedWorker"], Awaitable[None]]


def bot_of(module: ModuleType) -> Bot:
    """The task module's `bot` hook, or a default bot for its kind."""
    hook = getattr(module, "bot", None)
    if hook is not None:
        if not callable(hook):
            raise BotError(f"{module.__name__}.bot must be an async function bot(worker)")
        bot: Bot = hook
        return bot
    kind = TaskDefinition.from_module(module).kind
    return default_bot if kind not in (LIVE, REMOTE_PROCEDURE) else default_live_bot


async def default_bot(worker: SimulatedWorker) -> None:
    """A task with no bot hook: submit at once."""
    if worker.is_onboarding:
        raise BotError(
            "the task has an onboarding and its module no bot hook to answer it:"
            " define async def bot(worker) in the task module"
        )
    await worker.submit({"bot": True})


async def default_live_bot(worker: SimulatedWorker) -> None:
    """A live or remote procedure task with no bot hook: open the socket, then submit."""
    if worker.is_onboarding:
        await default_bot(worker)
        return
    await worker.connect()
    await worker.submit({"bot": True})
