"""Fixtures shared by the test modules (tests/browser has more of its own), and the
hypothesis profiles of the fuzz tests (tests/test_fuzz.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
from hypothesis import HealthCheck, settings

from tests.daemon import Daemons
from tests.fuzz_inputs import long_run

# The default run is short and the same each time (CI); ARCHITECT_FUZZ_EXAMPLES=N runs N
# examples per property, with new random inputs each run. No example database is kept
# (no .hypothesis folder): a failure prints the example, and its seed to reproduce it.
settings.register_profile(
    "architect",
    deadline=None,
    database=None,
    derandomize=not long_run(),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("architect")


@pytest_twisted.async_yield_fixture
async def daemons(tmp_path: Path) -> AsyncIterator[Daemons]:
    """Starts daemons (tests/daemon.py) in tmp_path; stops them all when the test ends."""
    started = Daemons(tmp_path)
    try:
        yield started
    finally:
        await started.stop_all()
