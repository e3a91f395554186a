"""The demo shipped with Architect: one page that shows the three kinds of task at once.

- static part: the page shows the unit's sentence (its assignment data) and the
  worker submits a sentiment label for it, judged by `validate_submission`;
- live part: a small bot chats with the worker through `agent.observe` (push to
  the page) and `await agent.act()` (the page's next message);
- remote procedure part: the page's "Analyse" button calls `analyse` on the
  server; a call with an empty text fails, and the page shows the error.

`conf/router.ini` runs it: `[task] module = architect.demo.task`, its units in
`architect/demo/units.json`, its page in `architect/demo/page/`. `bot` plays the page as
a worker would (`architect bots --config conf/router.ini`, and test_demo.py).
"""

from __future__ import annotations

from typing import Any

from architect.tasks import Agent, AgentGone, Assignment, BotError, Page, Status, in_reactor

TASK_KIND = "live"
LABELS = ("positive", "negative", "neutral")
GREETING = (
    "Hello, I am the demo bot, running in the task's Python code. Write me anything; "
    "when you are done, pick a label for the sentence and submit."
)


def words_of(text: str) -> list[str]:
    return [word.strip(".,;:!?\"'()") for word in text.split() if word.strip(".,;:!?\"'()")]


def bot_reply(message: str) -> str:
    """What the bot answers to one message from the worker."""
    words = words_of(message)
    if not words:
        return "Say something and I will answer."
    if words[0].lower() in ("hello", "hi", "hey"):
        return "Hello to you too! Try the Analyse button: it calls Python on the server."
    if "help" in (word.lower() for word in words):
        return "Read the sentence, pick the label that fits it best, then press Submit."
    longest = max(words, key=len)
    plural = "" if len(words) == 1 else "s"
    return f"I count {len(words)} word{plural} in your message; the longest is {longest!r}."


async def run_assignment(assignment: Assignment, agents: list[Agent]) -> None:
    """The live part: greet the worker, then answer each message until the worker is done."""
    (agent,) = agents  # units_per_assignment = 1: one worker per assignment
    if not assignment.resumed:  # after a restart of the daemon the page has its greeting
        agent.observe({"from": "bot", "text": GREETING})
    while True:
        try:
            message = await agent.act()
        except AgentGone:
            return  # submitted, or left
        if message is not None:
            agent.observe({"from": "bot", "text": bot_reply(str(message.get("text", "")))})


@in_reactor  # cheap: no need for a thread
def analyse(agent: Agent, args: Any) -> dict[str, Any]:
    """The remote procedure: a few facts about a text."""
    text = args.get("text") if isinstance(args, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise ValueError("there is nothing to analyse: the text is empty")
    words = words_of(text)
    return {
        "words": len(words),
        "characters": len(text),
        "longest_word": max(words, key=len) if words else "",
    }


PROCEDURES = {"analyse": analyse}


@in_reactor
def validate_submission(agent: Agent, data: dict[str, Any]) -> bool:
    """The static part's check: a submission without one of the labels is soft-rejected."""
    return data.get("label") in LABELS


async def bot(worker: Page) -> None:
    """A simulated worker: reads the greeting, chats twice with the demo bot, analyses the
    sentence and submits a label."""
    await worker.connect()
    await worker.wait_for_status(Status.IN_TASK)
    greeting = await worker.next_update()
    if greeting.get("from") != "bot":
        raise BotError(f"the demo bot did not greet first: {greeting}")
    for message in ("hello", "How many words are in this message?"):
        reply = await worker.ask({"text": message})
        if reply.get("text") != bot_reply(message):
            raise BotError(f"the demo bot answered {message!r} with {reply}")
    await worker.call("analyse", {"text": worker.init_data["text"]})
    await worker.submit({"label": worker.random.choice(LABELS), "messages": 4})
