"""Fixtures shared by the test modules (tests/browser has more of its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted

from tests.daemon import Daemons


@pytest_twisted.async_yield_fixture
async def daemons(tmp_path: Path) -> AsyncIterator[Daemons]:
    """Starts daemons (tests/daemon.py) in tmp_path; stops them all when the test ends."""
    started = Daemons(tmp_path)
    try:
        yield started
    finally:
        await started.stop_all()
