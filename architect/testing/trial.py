"""Daemons in `twisted.trial` test cases, which pytest runs as well.

    from architect.testing import TaskTestCase

    class ChatTest(TaskTestCase):
        async def test_two_bots_chat(self):
            daemon = await self.start_daemon(HERE / "router.ini")
            alice = await daemon.worker("alice")
            ...

`python -m twisted.trial PACKAGE` runs such a test as trial runs any: it spins the
reactor for each test and checks the reactor is left clean. pytest runs
`unittest.TestCase`s too, but with pytest-twisted loaded its reactor already runs (in a
greenlet) and trial's own way of waiting cannot spin it again: so under pytest-twisted a
`TaskTestCase` runs its setUp, test, tearDown and cleanups itself, waiting on each with
`pytest_twisted.blockon`. One test file serves both runners.

`DaemonMixin` is the daemon part alone, for a trial TestCase of your own (run by trial).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.trial import unittest

from architect.config import Config
from architect.testing.daemon import TaskDaemon
from architect.testing.waits import with_timeout

DEFAULT_TEST_TIMEOUT = 120.0  # trial's default for one test


class DaemonMixin:
    """`start_daemon`: a daemon for this test, stopped (and its folder removed) at its end."""

    async def start_daemon(self, config: str | Path | Config, **options: Any) -> TaskDaemon:
        """The daemon of `config` (an ini path), started; `options` go to TaskDaemon
        (router=, backend=, task= overrides, timeout= of its workers' waits)."""
        daemon = TaskDaemon(config, **options)
        await daemon.start()
        # The TestCase's own addCleanup (trial runs a Deferred cleanup to its end).
        cast(Any, self).addCleanup(lambda: Deferred.fromCoroutine(daemon.stop()))
        return daemon


class TaskTestCase(DaemonMixin, unittest.TestCase):
    """A trial TestCase with `start_daemon`, run by trial and by pytest alike."""

    def run(self, result: Any = None) -> Any:
        blockon = _pytest_twisted_blockon(result)
        if blockon is None:
            return super().run(result)
        _run_waiting_with(blockon, self, result)
        return result

    def flushLoggedErrors(self, *errorTypes: type[BaseException]) -> list[Any]:
        """trial's: take the errors logged during the test (trial fails a test that leaves
        one); under pytest, which does not watch the log, there are none to take."""
        if getattr(self, "_observer", None) is None:
            return []
        errors: list[Any] = super().flushLoggedErrors(*errorTypes)
        return errors


def _pytest_twisted_blockon(result: Any) -> Any:
    """pytest-twisted's `blockon` when pytest runs this test with that plugin, else None."""
    config = getattr(result, "config", None)
    plugins = getattr(config, "pluginmanager", None)
    if plugins is None or not plugins.hasplugin("twisted"):
        return None
    import pytest_twisted

    return pytest_twisted.blockon


def _run_waiting_with(blockon: Any, case: unittest.TestCase, result: Any) -> None:
    """The unittest protocol of one test (start, outcome, stop), each step awaited through
    `blockon` in the reactor pytest-twisted runs."""
    method = getattr(case, case._testMethodName)
    timeout = getattr(method, "timeout", None) or getattr(case, "timeout", None)
    timeout = float(timeout or DEFAULT_TEST_TIMEOUT)
    result.startTest(case)
    skip = getattr(method, "skip", None) or getattr(case, "skip", None)
    if skip:
        result.addSkip(case, str(skip))
        result.stopTest(case)
        return

    def step(function: Any, what: str) -> str:
        """'ok', 'skip' or 'failed' (the outcome given to `result`)."""
        try:
            blockon(with_timeout(maybeDeferred(function), case_reactor(), timeout, what))
        except unittest.SkipTest as e:
            result.addSkip(case, str(e))
            return "skip"
        except case.failureException:
            result.addFailure(case, sys.exc_info())
            return "failed"
        except KeyboardInterrupt:
            raise
        except BaseException:
            result.addError(case, sys.exc_info())
            return "failed"
        return "ok"

    name = f"{type(case).__name__}.{case._testMethodName}"
    outcome = step(case.setUp, f"{name}: setUp did not finish within {timeout} s")
    if outcome == "ok":
        outcome = step(method, f"{name} did not finish within {timeout} s")
        if step(case.tearDown, f"{name}: tearDown did not finish within {timeout} s") != "ok":
            outcome = "failed"
    # trial keeps the cleanups (addCleanup) in this list, run last first.
    cleanups = getattr(case, "_cleanups", [])
    while cleanups:
        function, args, kwargs = cleanups.pop()
        done = step(partial(function, *args, **kwargs), f"{name}: a cleanup did not finish")
        if done != "ok":
            outcome = "failed"
    if outcome == "ok":
        result.addSuccess(case)
    result.stopTest(case)


def case_reactor() -> Any:
    from twisted.internet import reactor

    return reactor
