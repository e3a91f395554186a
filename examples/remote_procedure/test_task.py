"""The remote procedure task with simulated workers: calls answered, an error the page
is told, a file uploaded with the submission. Run by pytest and by trial alike:

    python -m pytest examples/remote_procedure
    python -m twisted.trial examples.remote_procedure
"""

from __future__ import annotations

import json
from pathlib import Path

from architect.protocol import Status
from architect.testing import RemoteError, TaskTestCase
from examples.remote_procedure import task

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "router.ini"
UNITS = json.loads((HERE / "units.json").read_text())


class RemoteProcedureTest(TaskTestCase):
    async def test_the_bot_corrects_a_sentence(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        worker = await daemon.play("alice", bot=task.bot)
        [stored] = await daemon.submissions()
        self.assertEqual(stored.data, {"corrected": "The quick brown fox jumped over the lazy go."})
        self.assertEqual(await daemon.status(worker.agent_id or ""), Status.COMPLETED)

    async def test_calls_answer_with_values(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice = await daemon.worker("alice")
        await alice.register()
        self.assertEqual(alice.init_data, UNITS[0])
        await alice.connect()
        counted = await alice.call("count_words", {"text": UNITS[0]["text"]})
        self.assertEqual(counted, {"words": 9, "characters": 44})
        checked = await alice.call("check_spelling", {"text": "Teh dog"})
        self.assertEqual(checked, {"unknown": [{"word": "Teh", "suggestions": ["the"]}]})

    async def test_a_failing_call_tells_the_page_why(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice = await daemon.worker("alice")
        await alice.register()
        with self.assertRaises(RemoteError) as caught:
            await alice.call("check_spelling", {"text": ""})
        self.assertEqual(
            str(caught.exception),
            "'check_spelling' failed: there is nothing to check: the text is empty",
        )
        with self.assertRaises(RemoteError):
            await alice.call("no_such_procedure", {})
        # The daemon logs the procedure's error; trial fails a test that leaves it unread.
        self.flushLoggedErrors(ValueError)

    async def test_a_file_goes_with_the_submission(self) -> None:
        daemon = await self.start_daemon(CONFIG)
        alice = await daemon.worker("alice")
        await alice.register()
        notes = ("notes.txt", b"checked twice", "text/plain")
        await alice.submit({"corrected": "The dog."}, files={"notes": notes})
        [stored] = await daemon.submissions()
        self.assertEqual(stored.data["corrected"], "The dog.")
        [kept] = stored.files
        self.assertEqual((kept.original_name, kept.size), ("notes.txt", 13))
        self.assertEqual(
            (daemon.database.data_dir / kept.stored_path).read_bytes(), b"checked twice"
        )
