"""Remote procedure calls from a real browser to a task module's PROCEDURES.

mephisto-task 2.0.4 (useMephistoRemoteProcedureTask) resolves every call with the parsed
response, so an error arrives as `{"error": ...}`; architect.js resolves values and
rejects errors with a RemoteError.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from tests.browser.support import Launcher, PageHandle, Pages, text_of
from tests.browser.tasks import RPC_TASK

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARCHITECT_CALL = """
([name, args]) => window.task.callRemote(name, args).then(
    value => ({value}), error => ({rejected: error.name, message: error.message}))
"""
MEPHISTO_CALL = "([name, args]) => window.callProcedure(name, args).then(value => ({value}))"


async def call(pages: Pages, handle: PageHandle, name: str, args: Any) -> dict[str, Any]:
    script = ARCHITECT_CALL if "architect" in handle.page.url else MEPHISTO_CALL
    answer: dict[str, Any] = await pages.run(handle.page.evaluate(script, [name, args]))
    return answer


@pytest.mark.parametrize("page", ["mephisto_rpc.html", "architect_live.html"])
@pytest_twisted.ensureDeferred
async def test_procedures_return_values_and_errors(launcher: Launcher, page: str) -> None:
    _, pages = await launcher.task(RPC_TASK, [{"n": 1}])
    handle = await pages.open(page, "alice")
    await text_of(pages, handle, "#status")
    await pages.run(
        handle.page.wait_for_function(
            "document.querySelector('#connection')?.textContent === 'connected'"
        )
    )

    assert await call(pages, handle, "add", {"a": 2, "b": 3}) == {"value": {"sum": 5}}
    assert await call(pages, handle, "divide", {"a": 1, "b": 4}) == {"value": 0.25}

    failed = await call(pages, handle, "divide", {"a": 1, "b": 0})
    unknown = await call(pages, handle, "nope", {})
    if page.startswith("mephisto"):
        # The published hook has no error path: the error is the parsed response.
        assert set(failed) == {"value"} and set(failed["value"]) == {"error"}
        failed_message, unknown_message = failed["value"]["error"], unknown["value"]["error"]
    else:
        assert failed["rejected"] == unknown["rejected"] == "RemoteError"
        failed_message, unknown_message = failed["message"], unknown["message"]
    assert "'divide' failed" in failed_message and "division by zero" in failed_message
    assert "unknown procedure 'nope'" in unknown_message

    # Calls go on working after an error.
    assert await call(pages, handle, "add", {"a": 40, "b": 2}) == {"value": {"sum": 42}}
    assert handle.errors == []
