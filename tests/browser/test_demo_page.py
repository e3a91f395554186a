"""The shipped demo (conf/router.ini, as it is) in a real browser, with a screenshot.

Loaded through build_service with the shipped config; only where it listens and keeps
its files is changed for the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from architect.config import load_config
from tests.browser.support import Launcher
from tests.daemon import relocated

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHIPPED_CONFIG = Path(__file__).parents[2] / "conf" / "router.ini"


@pytest_twisted.ensureDeferred
async def test_the_shipped_demo_page_registers_and_renders(
    launcher: Launcher, tmp_path: Path
) -> None:
    shipped = load_config(SHIPPED_CONFIG)
    assert shipped.backend.mode == "embedded"
    daemon = await launcher.start(relocated(shipped, tmp_path))
    pages = launcher.pages_for(daemon.port)
    handle = await pages.open("/", "demo-worker")
    await pages.run(handle.page.wait_for_load_state("networkidle"))

    # The page registered its worker: the backend gave it an agent.
    database = daemon.database
    assert database is not None
    agents = await database.list_agents()
    assert len(agents) == 1, agents
    assert handle.errors == [], handle.errors
    await pages.doc_screenshot(handle, "demo")
