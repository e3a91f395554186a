"""Refused workers see why, one page per reason, on mephisto-task 2.0.4 and on architect.js.

One daemon per client runs a static task module with two units, at most one unit at a time
and one unit in all per worker, and a qualification requirement a granted "banned" fails.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from architect.protocol import FailureReason, Status
from architect.qualifications import Requirement
from tests.browser.support import (
    Launcher,
    text_of,
    wait_for,
    wait_for_submission,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STATIC_TASK = """
    def init_data(unit):
        return {"text": "Read: " + unit.assignment_data["sentence"]}
"""

UNITS = [{"sentence": "the first one."}, {"sentence": "the second one."}]


@pytest.mark.parametrize("page", ["mephisto_static.html", "architect_static.html"])
@pytest_twisted.ensureDeferred
async def test_each_refusal_reason_is_shown(launcher: Launcher, page: str) -> None:
    daemon, pages = await launcher.task(
        STATIC_TASK,
        UNITS,
        qualifications=(Requirement("banned", "not exists"),),
        allowed_concurrent=1,
        maximum_units_per_worker=1,
    )
    database = daemon.database
    assert database is not None
    mallory = await database.find_or_create_worker("mock", "mallory")
    await database.grant_qualification(mallory.id, "banned", 1)

    async def refusal(worker: str, assignment: str) -> str:
        handle = await pages.open(page, worker, assignment=assignment)
        return await text_of(pages, handle, "#blocked")

    # Not qualified: the requirement is not met.
    assert await refusal("mallory", "1") == FailureReason.NOT_QUALIFIED

    # Too many at once: alice holds a unit and asks for another assignment.
    alice = await pages.open(page, "alice", assignment="1")
    assert (await text_of(pages, alice, "#unit-text")).startswith("Read: the first one.")
    shown = await pages.open(page, "alice", assignment="2")
    assert await text_of(pages, shown, "#blocked") == FailureReason.TOO_MANY_CONCURRENT
    await pages.screenshot(shown, "too-many")
    if page.startswith("mephisto"):
        await pages.doc_screenshot(shown, "refusal")

    # The maximum: bob did his one unit, then asks for another.
    bob = await pages.open(page, "bob", assignment="1")
    assert (await text_of(pages, bob, "#unit-text")).startswith("Read: the second one.")
    bob_agent = await pages.run(bob.page.get_attribute("#task", "data-agent-id"))
    assert bob_agent
    await pages.run(bob.page.fill("#answer", "done"))
    await pages.run(bob.page.click("#submit"))
    await wait_for_submission(daemon, bob_agent)
    await wait_for(lambda: daemon.has_status(bob_agent, Status.COMPLETED), "completed")
    assert await refusal("bob", "2") == FailureReason.MAX_UNITS

    # No work: alice holds one unit, bob did the other.
    assert await refusal("carol", "1") == FailureReason.NO_WORK

    # Task missing: bob's completed registration id, asked again.
    assert await refusal("bob", "1") == FailureReason.TASK_MISSING

    for handle in pages.opened:
        assert handle.errors == [], handle.errors
