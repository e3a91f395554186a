"""The static labelling task with simulated workers: onboarding passed and failed, a
unit labelled, a submission soft-rejected, a reload. Run by pytest and by trial alike:

    python -m pytest examples/static_labelling
    python -m twisted.trial examples.static_labelling
"""

from __future__ import annotations

import json
from pathlib import Path

from architect.protocol import FailureReason, Status
from architect.testing import TaskTestCase
from examples.static_labelling import task

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "router.ini"
UNITS = json.loads((HERE / "units.json").read_text())
RIGHT = {"answers": {q["id"]: q["answer"] for q in task.ONBOARDING_QUESTIONS}}
WRONG = {"answers": {q["id"]: "neutral" for q in task.ONBOARDING_QUESTIONS}}


class StaticLabellingTest(TaskTestCase):
    async def test_the_bot_labels_a_text(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        worker = await daemon.play("alice")
        [stored] = await daemon.submissions()
        self.assertEqual(stored.agent_id, worker.agent_id)
        self.assertIn(stored.data["label"], task.LABELS)
        self.assertEqual(await daemon.status(stored.agent_id), Status.COMPLETED)

    async def test_onboarding_comes_first_without_its_answers(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice = await daemon.worker("alice")
        await alice.register()
        self.assertTrue(alice.is_onboarding)
        questions = alice.init_data["questions"]
        self.assertEqual([q["id"] for q in questions], ["q1", "q2"])
        self.assertTrue(all("answer" not in q for q in questions))
        await alice.submit_onboarding(RIGHT)
        self.assertFalse(alice.is_onboarding)
        self.assertEqual(alice.init_data, {"text": UNITS[0]["text"], "labels": task.LABELS})

    async def test_who_fails_the_onboarding_is_refused_from_then_on(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        bob = await daemon.worker("bob")
        await bob.register()
        await bob.submit_onboarding(WRONG)
        self.assertTrue(bob.is_refused)
        self.assertEqual(bob.failure_reason, FailureReason.NOT_QUALIFIED)
        await bob.register(assignment_id="2")
        self.assertEqual(bob.failure_reason, FailureReason.NOT_QUALIFIED)

    async def test_a_label_not_offered_is_kept_but_soft_rejected(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        carol = await daemon.worker("carol")
        await carol.register()
        await carol.submit_onboarding(RIGHT)
        await carol.submit({"label": "happy"})
        [stored] = await daemon.submissions()
        self.assertEqual(stored.data, {"label": "happy"})
        self.assertEqual(await daemon.status(stored.agent_id), Status.SOFT_REJECTED)

    async def test_a_reload_gets_the_same_unit(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        dave = await daemon.worker("dave")
        await dave.register()
        await dave.submit_onboarding(RIGHT)
        agent_id, text = dave.agent_id, dave.init_data["text"]
        await dave.reload()
        self.assertEqual((dave.agent_id, dave.init_data["text"]), (agent_id, text))
        await dave.submit({"label": "neutral"})
        self.assertEqual(len(await daemon.submissions()), 1)
