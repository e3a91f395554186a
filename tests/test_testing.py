"""architect.testing from pytest: the fixture, TaskDaemon's relocation, the simulated
worker's bounded waits and errors. (The examples' own tests, run by pytest and trial,
use the rest of it.)"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from architect.protocol import FailureReason, Status
from architect.testing import HttpError, NoAgent, TaskDaemon, TaskEnded, WaitTimeout
from architect.testing.fixtures import daemon_fixture
from examples.static_labelling import task as static_task

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "examples" / "static_labelling" / "router.ini"
DEMO = ROOT / "conf" / "router.ini"

static = daemon_fixture(STATIC)
demo = daemon_fixture(DEMO)


@pytest_twisted.ensureDeferred
async def test_the_fixture_gives_a_daemon_of_the_ini(static: TaskDaemon) -> None:
    assert static.config.task.name == "static_labelling"
    assert static.port != 3000  # a free port, not the file's
    assert static.folder in static.config.storage.data_dir.parents
    worker = await static.play("alice")
    [stored] = await static.submissions()
    assert stored.agent_id == worker.agent_id


@pytest_twisted.ensureDeferred
async def test_a_daemon_leaves_nothing_behind(tmp_path: Path) -> None:
    daemon = TaskDaemon(STATIC)
    await daemon.start()
    folder = daemon.folder
    assert (folder / "data" / "architect.sqlite3").is_file()
    await daemon.stop()
    assert not folder.exists()
    kept = TaskDaemon(STATIC, folder=tmp_path / "mine", task={"name": "another_run"})
    async with kept:
        assert kept.config.task.name == "another_run"
    assert (tmp_path / "mine" / "data" / "architect.sqlite3").is_file()  # a folder given stays


@pytest_twisted.ensureDeferred
async def test_a_wait_that_runs_out_says_what_it_waited_for(demo: TaskDaemon) -> None:
    alice = await demo.worker("alice")
    await alice.register()
    await alice.connect()
    await alice.next_update()  # the greeting
    with pytest.raises(WaitTimeout) as caught:
        await alice.next_update(timeout=0.5)  # the demo bot says nothing more unasked
    message = str(caught.value)
    assert message.startswith(f"worker alice (agent {alice.agent_id}): no live update came")
    assert "within 0.5 s" in message and "'in task'" in message and "1 so far" in message
    with pytest.raises(WaitTimeout, match="did not become 'waiting'"):
        await alice.wait_for_status(Status.WAITING, timeout=0.5)


@pytest_twisted.ensureDeferred
async def test_what_a_page_cannot_do_is_said(static: TaskDaemon) -> None:
    bob = await static.worker("bob")
    with pytest.raises(NoAgent, match="register first"):
        await bob.send({"text": "hi"})
    await bob.register()
    with pytest.raises(NoAgent, match="submit_onboarding"):
        await bob.submit({"label": "positive"})
    await bob.submit_onboarding({"answers": {}})  # wrong: refused from then on
    assert bob.is_refused and bob.failure_reason == FailureReason.NOT_QUALIFIED
    with pytest.raises(NoAgent, match="was refused: You are not currently qualified"):
        await bob.submit({"label": "positive"})
    stranger = await static.worker("stranger")
    stranger.agent = bob.agents[0]  # another browser's agent: the router refuses
    with pytest.raises(HttpError, match="answered 403"):
        await stranger.submit_onboarding({"answers": {}})


@pytest_twisted.ensureDeferred
async def test_an_agent_that_ends_ends_the_waits(demo: TaskDaemon) -> None:
    alice = await demo.worker("alice")
    await alice.register()
    await alice.connect()
    await alice.next_update()
    await alice.submit({"label": "positive", "messages": 0})
    assert await alice.wait_until_ended() == Status.COMPLETED
    with pytest.raises(TaskEnded, match="'completed'"):
        await alice.next_update()


# validate_submission runs in a worker thread, after the submission is stored: the
# test module's gate holds it there.
JUDGE_GATE = threading.Event()
SLOW_JUDGE = """
from examples.static_labelling.task import (
    LABELS, bot, init_data, onboarding_data, validate_onboarding,
)
from tests.test_testing import JUDGE_GATE

def validate_submission(agent, data):
    JUDGE_GATE.wait(10)
    return data.get("label") in LABELS
"""


@pytest_twisted.ensureDeferred
async def test_a_submission_is_judged_before_its_status_or_the_store_is_read(
    tmp_path: Path,
) -> None:
    module = tmp_path / "slow_judge.py"
    module.write_text(SLOW_JUDGE)
    JUDGE_GATE.clear()
    right = {"answers": {q["id"]: q["answer"] for q in static_task.ONBOARDING_QUESTIONS}}
    async with TaskDaemon(STATIC, task={"module": str(module)}) as daemon:
        carol = await daemon.worker("carol")
        await carol.register()
        await carol.submit_onboarding(right)
        try:
            await carol.submit({"label": "happy"})  # stored; its verdict still to come
            assert carol.agent_id is not None
            status = Deferred.fromCoroutine(daemon.status(carol.agent_id))
            assert not status.called  # it waits for the verdict, not the status before it
        finally:
            JUDGE_GATE.set()  # the hook's thread is not left waiting, pass or fail
        assert await status == Status.SOFT_REJECTED
        [stored] = await daemon.submissions()
        assert await daemon.status(stored.agent_id) == Status.SOFT_REJECTED
