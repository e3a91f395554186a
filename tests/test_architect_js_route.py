"""GET /architect.js: our browser client, served before the task's own static files."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import pytest_twisted
import treq

from architect.config import RouterConfig
from architect.router.hub import RouterHub
from tests.clients import running_router


def shipped_client() -> bytes:
    return resources.files("architect").joinpath("static", "architect.js").read_bytes()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[RouterHub, int]]:
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<html>task page</html>")
    # A task folder with its own architect.js must not shadow ours.
    (static / "architect.js").write_text("window.NOT_OURS = true;")
    config = RouterConfig(static_dir=static, upload_dir=tmp_path / "uploads")
    with running_router(config) as running:
        yield running


def test_the_client_ships_as_package_data() -> None:
    text = shipped_client().decode("utf-8")
    assert "root.Architect = {" in text
    assert "mephisto_bound_live_update" in text


@pytest_twisted.ensureDeferred
async def test_architect_js_is_served_before_the_static_dir(
    router: tuple[RouterHub, int],
) -> None:
    _, port = router
    response = await treq.get(f"http://127.0.0.1:{port}/architect.js")
    body = await response.content()
    assert response.code == 200
    assert body == shipped_client()
    content_type = response.headers.getRawHeaders(b"content-type")
    assert content_type is not None
    assert content_type[0].startswith(b"application/javascript")

    # The rest of the static folder is still the task's.
    page = await treq.get(f"http://127.0.0.1:{port}/index.html")
    assert await page.content() == b"<html>task page</html>"


@pytest_twisted.ensureDeferred
async def test_architect_js_is_served_without_a_static_dir(tmp_path: Path) -> None:
    with running_router(RouterConfig(upload_dir=tmp_path / "uploads")) as (_, port):
        response = await treq.get(f"http://127.0.0.1:{port}/architect.js")
        assert response.code == 200
        assert await response.content() == shipped_client()
        other = await treq.get(f"http://127.0.0.1:{port}/other.js")
        assert other.code == 404
        await other.content()


@pytest_twisted.ensureDeferred
async def test_only_get_is_answered(router: tuple[RouterHub, int]) -> None:
    _, port = router
    response = await treq.post(f"http://127.0.0.1:{port}/architect.js", data=b"x")
    await response.content()
    assert response.code == 405
