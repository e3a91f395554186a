"""A static labelling task: say whether a short text is positive, negative or neutral.

Before the first unit, a worker answers two onboarding questions with known
answers; passing lets them work, failing refuses them from then on. Copy this
folder and change LABELS, the questions and units.json to make your own task.

`bot` plays the page as a worker would (`architect bots`, and test_task.py).
"""

from __future__ import annotations

from typing import Any

from architect.tasks import Agent, Page, UnitInfo, WorkerInfo, in_reactor

LABELS = ["positive", "negative", "neutral"]

# Onboarding: texts whose label is known.
ONBOARDING_QUESTIONS = [
    {"id": "q1", "text": "I loved every minute of this film.", "answer": "positive"},
    {"id": "q2", "text": "The bus was late again and I missed my train.", "answer": "negative"},
]


@in_reactor  # cheap hooks can run in the reactor; plain blocking ones run in a thread
def onboarding_data(worker: WorkerInfo) -> dict[str, Any]:
    """What the page shows an onboarding agent: the questions, without their answers."""
    return {
        "instructions": "Before you start: label these two texts.",
        "labels": LABELS,
        "questions": [{"id": q["id"], "text": q["text"]} for q in ONBOARDING_QUESTIONS],
    }


@in_reactor
def validate_onboarding(worker: WorkerInfo, data: dict[str, Any]) -> bool:
    """Pass only with every onboarding question answered right."""
    answers = data.get("answers") or {}
    return all(answers.get(q["id"]) == q["answer"] for q in ONBOARDING_QUESTIONS)


def init_data(unit: UnitInfo) -> dict[str, Any]:
    """What the page gets for a unit (the default would be the unit's data as it is)."""
    return {"text": unit.assignment_data["text"], "labels": LABELS}


def validate_submission(agent: Agent, data: dict[str, Any]) -> bool:
    """A submission without one of the labels is stored but marked soft_rejected."""
    return data.get("label") in LABELS


async def bot(worker: Page) -> None:
    """A simulated worker: passes the onboarding, then labels its text."""
    if worker.is_onboarding:
        answers = {q["id"]: q["answer"] for q in ONBOARDING_QUESTIONS}
        await worker.submit_onboarding({"answers": answers})
        if worker.is_refused:
            return  # the run reports the refusal
    await worker.submit({"label": worker.random.choice(worker.init_data["labels"])})
