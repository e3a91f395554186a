"""The shipped demo (conf/router.ini) with simulated workers: the bot plays all three
kinds of task, and each kind on its own. Run by pytest and by trial alike:

    python -m pytest architect/demo
    python -m twisted.trial architect.demo
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.defer import Deferred

from architect.demo import task
from architect.protocol import Status
from architect.testing import RemoteError, TaskTestCase

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent.parent / "conf" / "router.ini"
UNITS = json.loads((HERE / "units.json").read_text())


class DemoTest(TaskTestCase):
    async def test_the_bot_plays_the_demo(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        worker = await daemon.play("alice")
        [stored] = await daemon.submissions()
        self.assertEqual(stored.agent_id, worker.agent_id)
        self.assertIn(stored.data["label"], task.LABELS)
        self.assertEqual(await worker.wait_until_ended(), Status.COMPLETED)

    async def test_static_live_and_remote_parts(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice = await daemon.worker("alice")
        await alice.register()
        self.assertEqual(alice.init_data, UNITS[0])  # static: the unit's sentence
        await alice.connect()
        await alice.wait_for_status(Status.IN_TASK)
        self.assertEqual((await alice.next_update())["text"], task.GREETING)  # live
        reply = await alice.ask({"text": "How many words is this message?"})
        self.assertEqual(
            reply["text"], "I count 6 words in your message; the longest is 'message'."
        )
        facts = await alice.call("analyse", {"text": "Seven short words make a sentence."})
        self.assertEqual(facts, {"words": 6, "characters": 34, "longest_word": "sentence"})
        with self.assertRaises(RemoteError):
            await alice.call("analyse", {"text": "  "})
        self.flushLoggedErrors(ValueError)  # the daemon logs the procedure's error
        await alice.submit({"label": "neutral", "messages": 2})
        self.assertEqual(await alice.wait_until_ended(), Status.COMPLETED)

    async def test_a_dropped_connection_loses_nothing(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice = await daemon.worker("alice")
        await alice.register()
        await alice.connect()
        await alice.next_update()  # the greeting
        await alice.disconnect()
        sending = Deferred.fromCoroutine(alice.send({"text": "hello"}))
        self.assertFalse(sending.called)  # it waits for the socket
        await alice.reconnect()
        await sending
        reply = await alice.next_update()
        self.assertEqual(reply["text"], task.bot_reply("hello"))
        self.assertEqual(alice.reconnections, 1)
