"""Issue-level check: nothing acknowledged is lost in any topology, under SIGKILL.

Real daemons (twistd subprocesses) are killed with SIGKILL at a random moment (drawn
from the seed) while 100 simulated workers register and submit, then started again on
the same config, port and data; the workers retry through the outage as a page does.
Afterwards every submission acknowledged with "Submitted!" must be in the database,
none twice, no agent with two. The live variant checks that every chat message the
partner received is in `live_updates`, and that the chats carried on after the
restarts. tests/faults.py is the harness (`python -m tests.faults` runs more seeds and
prints a table); docs/reliability.md has the figures and what each topology guarantees.

Run with `pytest -s` to see each run's counts; a failure (or an expected failure)
carries them too, with the tails of the daemons' logs for a failure.

The defects today's code has are listed in KNOWN, by case and by kind of problem
(`Outcome.problems`: lost, duplicated, wrong_agent, 404, refused, gave_up, not_resumed).
A run showing a known one is an expected failure (xfail, its counts in the reason); a
run showing any other kind fails. A strict entry's defect shows in every run, so a run
without it fails too (the fix landed: remove the entry). A kill between two submissions
loses nothing, so the defects that need a kill at the wrong moment are not strict: such
a case passes in the runs where the kill missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults import (
    BY_NAME,
    Outcome,
    Processes,
    Runner,
    Scenario,
    Timeline,
    duplicates,
    run_live,
    run_submissions,
)

SEEDS = [1, 2, 3]
LIVE_SEEDS = [1, 2]


@dataclass(frozen=True)
class Known:
    """A defect of today's code: the kinds of problem it shows, why, what was measured."""

    kinds: frozenset[str]
    reason: str
    strict: bool = False  # it shows in every run


# --- the defects, with the figures measured by `python -m tests.faults` (docs/reliability.md)

JOURNAL = "fails until the router journal lands: "
BACKEND_KILLED = Known(
    frozenset({"lost", "duplicated"}),
    JOURNAL + "the router answers 'Submitted!' once it wrote the packet to the backend's"
    " socket, so a backend killed before committing it loses it (measured: 1 to 5 lost in 3"
    " of 10 runs). Also: a submission is committed, then its agent's 'completed' in another"
    " write; killed between the two, the backend takes the agent back as working and stores"
    " the worker's second try as a second submission (see EMBEDDED_KILLED)",
)
BACKEND_THEN_ROUTER_KILLED = Known(
    frozenset({"lost"}),
    JOURNAL + "the router holds in memory what it acknowledged while the backend is away,"
    " and a router killed then loses all of it (measured: 15 to 30 of 100 acknowledged"
    " lost, in 10 of 10 runs: those acknowledged while the backend was away)",
    strict=True,
)
EMBEDDED_KILLED = Known(
    frozenset({"404", "duplicated"}),
    "404: a restarted embedded daemon listens before its backend has told its router the"
    " agents it carries on, and answers their submissions in between 'unknown agent'"
    " (measured: 1 to 13 workers in 14 of 20 runs); duplicated: a submission is"
    " committed, then its agent's 'completed' in another write, and a kill between the two"
    " leaves the agent working at the restart: the worker's second try is stored again"
    " (measured: 1 or 2 rows in 5 of 20 runs). Nothing acknowledged was ever lost",
)
LIVE_RELAYED_BEFORE_STORED = Known(
    frozenset({"lost"}),
    "the backend gives a browser's live update to the task (which relays it to the"
    " partner) before its write to live_updates is committed, so a backend killed in"
    " between loses an update the partner saw (measured: 4 to 15 updates in 4 of 10 runs"
    " killing a backend, embedded or remote)",
)
LIVE_NEVER_RESUMED = Known(
    frozenset({"not_resumed", "lost"}),
    "after the router and then the backend restarted, no chat carries on: the backend"
    " holds its live agents unclaimed until a router shows them, and the router drops"
    " their pages' packets as of agents its backend never named, until resume_window ends"
    " them (measured: nothing delivered after the restarts, in 5 of 5 runs). Its lost"
    " updates are LIVE_RELAYED_BEFORE_STORED's",
    strict=True,
)

KNOWN: dict[tuple[str, str], Known] = {
    ("submissions", "embedded"): EMBEDDED_KILLED,
    ("submissions", "backend"): BACKEND_KILLED,
    ("submissions", "backend-router"): BACKEND_THEN_ROUTER_KILLED,
    ("live updates", "embedded"): LIVE_RELAYED_BEFORE_STORED,
    ("live updates", "backend"): LIVE_RELAYED_BEFORE_STORED,
    ("live updates", "backend-router"): LIVE_NEVER_RESUMED,
}


@pytest.fixture
def processes() -> Iterator[Processes]:
    """The daemons a test starts: all killed at its end, whatever happened."""
    started = Processes()
    try:
        yield started
    finally:
        started.kill_all()


def run(
    runner: Runner,
    scenario: Scenario,
    seed: int,
    folder: Path,
    processes: Processes,
) -> Outcome:
    try:
        outcome = asyncio.run(runner(scenario, seed, folder, processes))
    except BaseException:
        print(processes.tails())
        raise
    print("\n" + outcome.report())
    # The kill landed mid-stream: acknowledgements came before it (and, for submissions,
    # after it; for live updates that is the problem not_resumed when they do not).
    assert outcome.acknowledged_before_kill > 0, outcome.report()
    if outcome.what == "submissions":
        assert outcome.acknowledged > outcome.acknowledged_before_kill, outcome.report()
    return outcome


def judge(outcome: Outcome, processes: Processes) -> None:
    """Pass, fail, or xfail by KNOWN (see the module's docstring)."""
    problems = outcome.problems()
    known = KNOWN.get((outcome.what, outcome.scenario.name))
    expected = known.kinds if known is not None else frozenset()
    unexpected = {kind: n for kind, n in problems.items() if kind not in expected}
    assert not unexpected, f"{unexpected}: {outcome.report()}\n{processes.tails()}"
    if known is None:
        return
    if problems:
        pytest.xfail(f"{problems}: {known.reason}. This run: {outcome.line()}")
    if known.strict:
        pytest.fail(
            f"expected {sorted(known.kinds)} ({known.reason}), but this run had none:"
            f" fixed? then remove its entry from KNOWN. This run: {outcome.line()}"
        )


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("embedded", id="embedded-daemon-killed"),
        pytest.param("backend", id="separate-backend-killed"),
        pytest.param("router", id="separate-router-killed"),
        pytest.param("backend-router", id="separate-backend-then-router-killed"),
    ],
)
def test_no_acknowledged_submission_is_lost(
    name: str, seed: int, tmp_path: Path, processes: Processes
) -> None:
    judge(run(run_submissions, BY_NAME[name], seed, tmp_path, processes), processes)


@pytest.mark.slow
@pytest.mark.parametrize("seed", LIVE_SEEDS)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param("embedded", id="embedded-daemon-killed"),
        pytest.param("backend", id="separate-backend-killed"),
        pytest.param("router", id="separate-router-killed"),
        pytest.param("backend-router", id="separate-backend-then-router-killed"),
    ],
)
def test_live_updates_delivered_are_stored(
    name: str, seed: int, tmp_path: Path, processes: Processes
) -> None:
    judge(run(run_live, BY_NAME[name], seed, tmp_path, processes), processes)


# --- the checks can fail (fast: no daemon) ---


def test_duplicates_count_each_repeated_row_once() -> None:
    rows = [("a", "t1"), ("b", "t2"), ("a", "t1"), ("b", "t3"), ("c", "t1"), ("d", None)]
    # The second a/t1 (both repeated), b's second submission, c's copy of t1.
    assert duplicates(rows) == 3
    assert duplicates([("a", "t1"), ("b", "t2")]) == 0


def test_a_problem_no_entry_expects_fails() -> None:
    outcome = Outcome(BY_NAME["router"], 1, Timeline(), lost=["token"])
    with pytest.raises(AssertionError, match="lost"):
        judge(outcome, Processes())


def test_a_known_problem_is_an_expected_failure_and_another_fails() -> None:
    outcome = Outcome(BY_NAME["backend-router"], 1, Timeline(), lost=["token"])
    with pytest.raises(pytest.xfail.Exception, match="lost"):
        judge(outcome, Processes())
    outcome.not_found = 1  # the router is meant to hold these: not a known defect there
    with pytest.raises(AssertionError, match="404"):
        judge(outcome, Processes())


def test_a_strict_entry_without_its_defect_fails() -> None:
    outcome = Outcome(BY_NAME["backend-router"], 1, Timeline())
    with pytest.raises(pytest.fail.Exception, match="remove its entry"):
        judge(outcome, Processes())
    # A case whose entry is not strict passes when the kill missed its window.
    judge(Outcome(BY_NAME["backend"], 1, Timeline()), Processes())


def test_a_live_run_that_delivered_nothing_after_the_restarts_did_not_resume() -> None:
    outcome = Outcome(BY_NAME["router"], 1, Timeline(), what="live updates")
    assert outcome.problems() == {"not_resumed": 1}
    outcome.acknowledged_after = 1
    assert outcome.problems() == {}
