"""A live chat between two workers: `run_assignment` relays their messages.

The assignment has two units (`units_per_assignment = 2` in router.ini): the
first worker waits in "waiting" until the second arrives, then both are "in
task" and `run_assignment` runs. Each worker's messages come in through
`await agent.act()` and go to the partner through `partner.observe(...)`. A
message "/done" ends the chat; each worker then rates it and submits. When a
worker leaves, the partner's status becomes "partner disconnect" (the runner
does that; the pending `act()` then raises AgentGone).

`bot` plays the page as a worker would (`architect bots`, and test_task.py): two bots
make a pair.
"""

from __future__ import annotations

import re
import time
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, gatherResults

from architect.tasks import Agent, AgentGone, Assignment, BotError, Page, Status, TaskEnded

DONE = "/done"
OVER = "The chat is over. Please rate it and submit."


class Chat:
    def __init__(self, agents: list[Agent]) -> None:
        self.agents = agents
        self.listening: dict[str, Deferred[dict[str, Any] | None]] = {}
        self.over = False

    def tell(self, agents: list[Agent], sender: str, text: str) -> None:
        for agent in agents:
            if agent.is_active:
                agent.observe({"from": sender, "text": text})

    def others(self, agent: Agent) -> list[Agent]:
        return [other for other in self.agents if other is not agent]

    async def relay(self, agent: Agent) -> None:
        """Pass each message of `agent` to its partner, until "/done" or until it leaves."""
        while not self.over:
            waiting = self.listening[agent.agent_id] = agent.act()
            try:
                message = await waiting
            except CancelledError:
                return  # the partner ended the chat
            except AgentGone as gone:
                if gone.status == Status.COMPLETED:
                    self.tell(self.others(agent), "system", "Your partner has submitted.")
                return
            text = str((message or {}).get("text", "")).strip()
            if text == DONE:
                self.end()
            elif text:
                self.tell(self.others(agent), "partner", text)

    def end(self) -> None:
        self.over = True
        self.tell(self.agents, "system", OVER)
        for waiting in self.listening.values():
            waiting.cancel()  # a partner's pending act(): its relay returns


async def run_assignment(assignment: Assignment, agents: list[Agent]) -> None:
    topic = assignment.data["topic"]
    chat = Chat(agents)
    if not assignment.resumed:  # after a restart of the daemon, the chat goes on as it was
        chat.tell(
            agents, "system", f"You are both here. Topic: {topic} Write {DONE} to end the chat."
        )
    await gatherResults([Deferred.fromCoroutine(chat.relay(agent)) for agent in agents])


# Seconds a bot waits for its partner: in a load run, the next worker may be a while.
PARTNER_WAIT = 120
BOT_MESSAGES = 3


async def bot(worker: Page) -> None:
    """A simulated worker: waits for a partner, exchanges a few messages (each waits for
    the partner's), ends the chat, rates it and submits. A partner who leaves ends it too."""
    await worker.connect()
    sent = 0
    try:
        await worker.wait_for_status(Status.IN_TASK, timeout=PARTNER_WAIT)
        topic = await worker.next_update()
        if topic.get("from") != "system":
            raise BotError(f"the chat did not start with its topic: {topic}")
        over = False
        while sent < BOT_MESSAGES and not over:
            sent += 1
            await worker.pause()  # (in a load run) before the time is written in the message
            await worker.send({"text": f"{worker.name} says {sent} at {time.time():.6f}"}, False)
            reply = await worker.next_update()
            over = reply.get("text") == OVER
            said_at = re.search(r" at (\d+\.\d+)$", str(reply.get("text")))
            if said_at:  # the partner's message: its way here is the chat's delay
                worker.note_timing("live", time.time() - float(said_at.group(1)))
        if not over:
            await worker.send({"text": DONE})
            while (await worker.next_update()).get("text") != OVER:
                pass
    except TaskEnded:
        pass  # the partner left: what was said is submitted all the same
    await worker.submit({"rating": worker.random.randint(1, 5), "messages_sent": sent})
