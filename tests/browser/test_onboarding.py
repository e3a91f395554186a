"""Onboarding in a real browser, on mephisto-task 2.0.4 and on architect.js.

A worker who fails the onboarding is refused (and stays refused); one who passes gets a
unit straight away, submits it, and the submission is stored.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from architect.protocol import FailureReason
from tests.browser.support import (
    Launcher,
    text_of,
    wait_for_submission,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ONBOARDED_TASK = """
    def onboarding_data(worker):
        return {"question": "What colour is the sky on a clear day?"}

    def validate_onboarding(worker, data):
        return data.get("answer", "").strip().lower() == "blue"

    def init_data(unit):
        return {"text": "Describe: " + unit.assignment_data["picture"]}
"""


@pytest.mark.parametrize("page", ["mephisto_static.html", "architect_static.html"])
@pytest_twisted.ensureDeferred
async def test_onboarding_fail_is_refused_and_pass_gets_a_unit(
    launcher: Launcher, page: str
) -> None:
    daemon, pages = await launcher.task(
        ONBOARDED_TASK, [{"picture": "a red boat"}, {"picture": "a tall tree"}], onboarding=True
    )
    database = daemon.database
    assert database is not None

    # Fails: refused at once, and again on a later visit.
    olga = await pages.open(page, "olga")
    question = await text_of(pages, olga, "#onboarding-question")
    assert question == "What colour is the sky on a clear day?"
    onboarding_agent = await pages.run(olga.page.get_attribute("#onboarding", "data-agent-id"))
    assert onboarding_agent and onboarding_agent.startswith("onboarding")
    await pages.run(olga.page.fill("#onboarding-answer", "green"))
    await pages.run(olga.page.click("#onboarding-submit"))
    assert await text_of(pages, olga, "#blocked") == FailureReason.NOT_QUALIFIED
    await pages.run(olga.page.reload())
    assert await text_of(pages, olga, "#blocked") == FailureReason.NOT_QUALIFIED

    # Passes: a unit at once, then submits it.
    paul = await pages.open(page, "paul")
    await text_of(pages, paul, "#onboarding-question")
    await pages.run(paul.page.fill("#onboarding-answer", " Blue "))
    await pages.run(paul.page.click("#onboarding-submit"))
    assert await text_of(pages, paul, "#unit-text") == "Describe: a red boat"
    agent_id = await pages.run(paul.page.get_attribute("#task", "data-agent-id"))
    assert agent_id and not agent_id.startswith("onboarding")
    await pages.run(paul.page.fill("#answer", "a small red boat on a lake"))
    await pages.run(paul.page.click("#submit"))
    stored = await wait_for_submission(daemon, agent_id)
    assert stored.data == {"answer": "a small red boat on a lake"}
    paul_worker = await database.find_or_create_worker("mock", "paul")
    olga_worker = await database.find_or_create_worker("mock", "olga")
    assert (await database.get_qualifications(paul_worker.id))["browser_onboarding"].value == 1
    assert (await database.get_qualifications(olga_worker.id))["browser_onboarding"].value == 0

    # Passed once is enough: the next visit goes straight to a unit.
    again = await pages.open(page, "paul", assignment="2")
    assert await text_of(pages, again, "#unit-text") == "Describe: a tall tree"
    for handle in pages.opened:
        assert handle.errors == [], handle.errors
