"""The task module a config naming no `[task] module` runs: a plain static task, with a
one-question onboarding when `[task] onboarding = on`; without a units file it serves
`builtin_units()`, ten short texts to read.

(The shipped conf/router.ini runs the richer demo of `architect/demo/task.py`.)
"""

from __future__ import annotations

from typing import Any

from architect.tasks import Page, WorkerInfo, in_reactor

TASK_KIND = "static"
ONBOARDING_ANSWER = "ready"


def builtin_units(count: int = 10) -> list[dict[str, Any]]:
    """The units served without a configured units file."""
    return [
        {"text": f"Demo unit {n} of {count}: read this sentence, then submit."}
        for n in range(1, count + 1)
    ]


@in_reactor
def onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
    return {"question": f"Type {ONBOARDING_ANSWER!r} to start working."}


@in_reactor
def validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
    return str(data.get("answer", "")).strip().lower() == ONBOARDING_ANSWER


async def bot(worker: Page) -> None:
    """A simulated worker (`architect bots` on a config naming no task module)."""
    if worker.is_onboarding:
        await worker.submit_onboarding({"answer": ONBOARDING_ANSWER})
        if worker.is_refused:
            return
    await worker.submit({"read": True})
