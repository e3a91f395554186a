"""The live chat with simulated workers: two bots chat, messages go both ways, a partner
who leaves, a reload that gets the chat back. Run by pytest and by trial alike:

    python -m pytest examples/live_chat
    python -m twisted.trial examples.live_chat
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, gatherResults

from architect.protocol import Status
from architect.testing import SimulatedWorker, TaskDaemon, TaskTestCase
from examples.live_chat import task

CONFIG = Path(__file__).resolve().parent / "router.ini"
# A closed window is "disconnect" after 0.3 s, not 10: the partner hears of it at once.
QUICK = {"router": {"disconnect_grace": 0.3}, "backend": {"status_interval": 0.1}}


class LiveChatTest(TaskTestCase):
    async def pair(self, daemon: TaskDaemon) -> tuple[SimulatedWorker, SimulatedWorker]:
        """alice waits for a partner; bob comes; both are in the chat, with its topic."""
        alice = await daemon.worker("alice")
        await alice.register()
        await alice.connect()
        await alice.wait_for_status(Status.WAITING)
        bob = await daemon.worker("bob")
        await bob.register()
        await bob.connect()
        for worker in (alice, bob):
            await worker.wait_for_status(Status.IN_TASK)
            topic = await worker.next_update()
            self.assertEqual(topic["from"], "system")
            self.assertIn("Plan a weekend trip", topic["text"])
        return alice, bob

    async def test_two_bots_chat_and_submit(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        workers = [await daemon.worker(name) for name in ("alice", "bob")]
        for worker in workers:
            await worker.register()
        await gatherResults([Deferred.fromCoroutine(task.bot(worker)) for worker in workers])
        stored = {s.agent_id: s.data for s in await daemon.submissions()}
        self.assertEqual(set(stored), {worker.agent_id for worker in workers})
        for worker in workers:
            self.assertEqual(stored[worker.agent_id or ""]["messages_sent"], task.BOT_MESSAGES)
            self.assertEqual(await worker.wait_until_ended(), Status.COMPLETED)

    async def test_messages_go_both_ways(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice, bob = await self.pair(daemon)
        await alice.send({"text": "hello bob"})
        self.assertEqual(await bob.next_update(), {**bob.updates[-1], "text": "hello bob"})
        reply = await bob.ask({"text": "/done"})
        self.assertEqual((reply["from"], reply["text"]), ("system", task.OVER))
        self.assertEqual((await alice.next_update())["text"], task.OVER)

    async def test_a_partner_who_leaves(self) -> None:
        daemon = await self.start_daemon(CONFIG, **QUICK)
        alice, bob = await self.pair(daemon)
        await bob.disconnect()
        await alice.wait_for_status(Status.PARTNER_DISCONNECT)
        self.assertEqual(await daemon.status(bob.agent_id or ""), Status.DISCONNECT)
        await alice.submit({"rating": 2, "messages_sent": 0})  # what she has is kept
        [stored] = await daemon.submissions()
        self.assertEqual(stored.agent_id, alice.agent_id)

    async def test_a_reload_gets_the_chat_back(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice, bob = await self.pair(daemon)
        await alice.send({"text": "before the reload"})
        await bob.next_update()
        agent_id = bob.agent_id
        await bob.reload()
        self.assertEqual(bob.agent_id, agent_id)
        texts = [update.get("text") for update in bob.past_live_updates]
        self.assertIn("before the reload", texts)
        await alice.send({"text": "after the reload"})
        self.assertEqual((await bob.next_update())["text"], "after the reload")
