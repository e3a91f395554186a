"""Remote procedures: the page calls Python functions on the server.

The worker corrects a sentence with typos. The page's buttons call
`count_words` and `check_spelling` through `task.callRemote(name, args)`;
each procedure gets the agent and the call's arguments and returns a JSON
value. An exception (here: checking an empty text) comes back to the page
as an error, whose message the page shows.

`bot` plays the page as a worker would (`architect bots`, and test_task.py).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from architect.tasks import Agent, Page, in_reactor

VOCABULARY = frozenset(
    """
    a about after all an and are as at be beautiful brown by day dog flowers for fox from
    full garden go good her his in is it jumped lazy library lunch meet of on or our over
    quick should sunny the their they this to today tomorrow very was we weather will with
    """.split()
)


def words_of(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


def text_argument(args: Any) -> str:
    text = args.get("text") if isinstance(args, dict) else None
    if not isinstance(text, str):
        raise TypeError('call it with {"text": "..."}')
    return text


@in_reactor  # cheap and non-blocking: runs in the reactor thread
def count_words(agent: Agent, args: Any) -> dict[str, int]:
    text = text_argument(args)
    return {"words": len(words_of(text)), "characters": len(text)}


# A plain function may block (a big dictionary, a model): it runs in a thread.
def check_spelling(agent: Agent, args: Any) -> dict[str, Any]:
    text = text_argument(args)
    if not text.strip():
        raise ValueError("there is nothing to check: the text is empty")
    unknown = [word for word in words_of(text) if word.lower() not in VOCABULARY]
    return {
        "unknown": [
            {"word": word, "suggestions": difflib.get_close_matches(word.lower(), VOCABULARY, 3)}
            for word in unknown
        ]
    }


PROCEDURES = {"count_words": count_words, "check_spelling": check_spelling}


def validate_submission(agent: Agent, data: dict[str, Any]) -> bool:
    """A correction that still has unknown words is kept, but marked soft_rejected."""
    corrected = data.get("corrected")
    return isinstance(corrected, str) and not check_spelling(agent, {"text": corrected})["unknown"]


async def bot(worker: Page) -> None:
    """A simulated worker: counts, checks the spelling, takes the first suggestion for each
    unknown word, and submits the corrected sentence."""
    await worker.connect()
    text = worker.init_data["text"]
    await worker.call("count_words", {"text": text})
    checked = await worker.call("check_spelling", {"text": text})
    for unknown in checked["unknown"]:
        if unknown["suggestions"]:
            word, better = unknown["word"], unknown["suggestions"][0]
            text = text.replace(word, better.capitalize() if word[0].isupper() else better)
    await worker.submit({"corrected": text})
