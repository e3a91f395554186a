"""The admin listener's /metrics against real daemons (embedded, and a separate router with
a remote backend): registrations by outcome and reason, submissions, latencies, live
updates, connected agents, agents and units by status, the backend's queue; its token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from twisted.web.http_headers import Headers

from architect.config import (
    AdminConfig,
    BackendConfig,
    Config,
    ConfigError,
    RouterConfig,
    StorageConfig,
    TaskConfig,
    load_config,
)
from architect.endpoints import admin_url
from architect.protocol import ALIVE, CLIENT_BOUND_LIVE_UPDATE, MEPHISTO_BOUND_LIVE_UPDATE, Status
from architect.tap import build_service
from tests.admin_support import (
    bearer,
    register,
    sample,
    scrape,
    state,
    submit,
    with_admin,
)
from tests.clients import Browser, wait_for
from tests.daemon import ANY_LOOPBACK_PORT, Daemons, daemon_config, reactor

LIVE_TASK: dict[str, Any] = {
    "name": "ops",
    "module": "architect.demo.task",
    "maximum_units_per_worker": 1,
}
BACKEND_TOKEN = "metrics-backend-token"


async def work(daemon_url: str, port: int, expect_live: bool = True) -> Browser:
    """alice registers, says something on her socket, submits; a second registration of
    hers is refused (maximum_units_per_worker = 1); bob's page posts an error."""
    alice = Browser()
    data = await register(alice, daemon_url, "alice", "a1")
    agent_id = data["agent_id"]
    assert agent_id
    refused = await register(alice, daemon_url, "alice", "a2")
    assert refused["agent_id"] is None
    socket = await alice.open_socket(port)
    socket.send(ALIVE, agent_id)
    socket.send(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u1", "text": "hello"})
    if expect_live:
        # the bot's greeting and its answer
        await wait_for(lambda: len(socket.of_type(CLIENT_BOUND_LIVE_UPDATE)) >= 2, "the bot")
    code, answer = await submit(alice, daemon_url, agent_id, {"label": "positive"})
    assert code == 200, answer
    await socket.close()
    return alice


@pytest_twisted.ensureDeferred
async def test_an_embedded_daemons_metrics(daemons: Daemons) -> None:
    config = with_admin(daemon_config(daemons.next_folder(), task=LIVE_TASK))
    daemon = await daemons.start(config)
    before = await scrape(daemon)
    assert sample(before, "architect_registrations_total", outcome="agent", reason="") == 0
    assert sample(before, "architect_units", status="available") == 10

    await work(daemon.url, daemon.port)
    await daemon.settled()
    after = await scrape(daemon)
    assert sample(after, "architect_registrations_total", outcome="agent", reason="") == 1
    assert (
        sample(after, "architect_registrations_total", outcome="refused", reason="max_units") == 1
    )
    assert sample(after, "architect_submissions_total", kind="unit", outcome="stored") == 1
    assert sample(after, "architect_registration_seconds_count") == 2
    assert sample(after, "architect_submission_seconds_count") == 1
    assert sample(after, "architect_submissions_in_flight") == 0
    assert sample(after, "architect_live_updates_total", direction="in") == 1
    assert sample(after, "architect_live_updates_total", direction="out") == 2
    assert sample(after, "architect_units", status="completed") == 1
    assert sample(after, "architect_units", status="available") == 9
    assert sample(after, "architect_agents", status="completed") == 1
    assert sample(after, "architect_router_agents", status="completed") == 1
    assert sample(after, "architect_backend_connected") == 1
    assert sample(after, "architect_backend_queue_packets") == 0
    assert sample(after, "architect_agents_at_work") == 0
    commits = sample(after, "architect_database_commit_seconds_count")
    assert commits > sample(before, "architect_database_commit_seconds_count") >= 1
    assert sample(after, "architect_database_commit_seconds_sum") > 0


@pytest_twisted.ensureDeferred
async def test_connected_agents_and_browser_errors(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    bob = Browser()
    agent_id = (await register(bob, daemon.url, "bob"))["agent_id"]
    socket = await bob.open_socket(daemon.port)
    socket.send(ALIVE, agent_id)
    await wait_for(lambda: agent_id in daemon.hub.link_agents.values(), "bob's socket")
    code, _ = await bob.post_json(
        f"{daemon.url}/log_error", {"USED_AGENT_ID": agent_id, "error_data": {"e": "boom"}}
    )
    assert code == 200
    samples = await scrape(daemon)
    assert sample(samples, "architect_connected_agents") == 1
    assert sample(samples, "architect_agents_at_work") == 1
    assert sample(samples, "architect_browser_errors_total") == 1
    await socket.close()
    await wait_for(lambda: not daemon.hub.link_agents, "bob's socket to close")
    assert sample(await scrape(daemon), "architect_connected_agents") == 0


@pytest_twisted.ensureDeferred
async def test_a_separate_router_and_its_remote_backend(daemons: Daemons) -> None:
    folder = daemons.next_folder()
    router = await daemons.start(
        with_admin(
            Config(
                path=folder / "router.ini",
                router=RouterConfig(
                    listen=ANY_LOOPBACK_PORT,
                    backend_token=BACKEND_TOKEN,
                    upload_dir=folder / "uploads",
                    journal_dir=folder / "journal",
                ),
                backend=BackendConfig(mode="off"),
            )
        )
    )
    assert sample(await scrape(router), "architect_backend_connected") == 0
    folder = daemons.next_folder()
    backend = await daemons.start(
        with_admin(
            Config(
                path=folder / "backend.ini",
                router=RouterConfig(upload_dir=folder / "unused"),
                backend=BackendConfig(
                    mode="remote",
                    router_url=router.ws_url,
                    backend_token=BACKEND_TOKEN,
                    status_interval=0.2,
                ),
                storage=StorageConfig(data_dir=folder / "data"),
                task=TaskConfig(**LIVE_TASK),
            )
        )
    )
    await wait_for(lambda: router.hub.backend is not None, "the backend to connect")
    await work(router.url, router.port)
    await backend.settled()
    at_router = await scrape(router)
    at_backend = await scrape(backend)
    # The router: the workers' waits, the live traffic, its agents and its link.
    assert sample(at_router, "architect_registration_seconds_count") == 2
    assert sample(at_router, "architect_submission_seconds_count") == 1
    assert sample(at_router, "architect_live_updates_total", direction="in") == 1
    assert sample(at_router, "architect_live_updates_total", direction="out") == 2
    assert sample(at_router, "architect_backend_connected") == 1
    assert sample(at_router, "architect_journal_pending") == 0
    assert sample(at_router, "architect_registrations_total", outcome="agent", reason="") == 0
    # The backend: what it decided and stored, the task run's counts.
    assert sample(at_backend, "architect_registrations_total", outcome="agent", reason="") == 1
    assert (
        sample(at_backend, "architect_registrations_total", outcome="refused", reason="max_units")
        == 1
    )
    assert sample(at_backend, "architect_submissions_total", kind="unit", outcome="stored") == 1
    assert sample(at_backend, "architect_units", status="completed") == 1
    assert ("architect_connected_agents", ()) not in at_backend  # it runs no router


@pytest_twisted.ensureDeferred
async def test_the_token_is_required(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    url = f"{daemon.admin_url}/metrics"
    basic = Headers({"Authorization": ["Basic YWRtaW4="]})
    for headers in (None, bearer("wrong"), basic):
        response = await treq.get(url, headers=headers)
        assert response.code == 401
        assert b"architect_" not in await response.content()
    for path in ("/state", "/settings"):
        assert (await treq.get(f"{daemon.admin_url}{path}")).code == 401
    response = await treq.post(f"{daemon.admin_url}/control/block_worker", data=b"{}")
    assert response.code == 401
    assert (await treq.get(url, headers=bearer())).code == 200


@pytest_twisted.ensureDeferred
async def test_the_admin_listener_is_not_on_the_workers_port(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    assert daemon.admin_url != daemon.url
    response = await treq.get(f"{daemon.url}/metrics", headers=bearer())
    assert b"architect_registrations" not in await response.content()
    response = await treq.post(f"{daemon.url}/control/block_worker", data=b"{}", headers=bearer())
    assert response.code in (404, 405)


@pytest_twisted.ensureDeferred
async def test_no_admin_listener_unless_configured(daemons: Daemons) -> None:
    daemon = await daemons.embedded()
    assert "admin" not in daemon.service.namedServices


def test_a_listener_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    config = attrs.evolve(
        daemon_config(tmp_path), admin=AdminConfig(listen="tcp:0:interface=0.0.0.0")
    )
    with pytest.raises(ConfigError, match=r"\[admin\] listen: listens beyond this host"):
        build_service(config, reactor)
    tokened = attrs.evolve(config, admin=attrs.evolve(config.admin, admin_token="t"))
    assert "admin" in build_service(tokened, reactor).namedServices


def test_two_daemons_keep_their_own_counts(tmp_path: Path) -> None:
    first = build_service(with_admin(daemon_config(tmp_path / "1")), reactor)
    second = build_service(with_admin(daemon_config(tmp_path / "2")), reactor)
    assert first.hub is not None and second.hub is not None
    first.hub.metrics.live_update("in")
    assert first.hub.metrics.value("architect_live_updates_total", direction="in") == 1
    assert second.hub.metrics.value("architect_live_updates_total", direction="in") == 0


@pytest.mark.parametrize(
    ("listen", "token", "refused"),
    [
        ("tcp:9100:interface=127.0.0.1", "", False),
        (r"tcp6:9100:interface=\:\:1", "", False),
        ("unix:/run/architect/admin.sock", "", False),
        ("tcp:9100", "", True),  # every interface
        ("tcp:9100:interface=0.0.0.0", "", True),
        ("tcp:9100:interface=192.0.2.7", "", True),
        ("tcp:9100:interface=192.0.2.7", "s3cret", False),
    ],
)
def test_the_admin_section_of_an_ini_file(
    tmp_path: Path, listen: str, token: str, refused: bool
) -> None:
    ini = tmp_path / "router.ini"
    ini.write_text(f"[admin]\nlisten = {listen}\nadmin_token = {token}\n[log]\nformat = json\n")
    if refused:
        with pytest.raises(ConfigError, match=r"\[admin\] listen"):
            load_config(ini)
        return
    config = load_config(ini)
    assert config.admin == AdminConfig(listen=listen, admin_token=token)
    assert config.log.format == "json"


def test_admin_urls_for_the_commands() -> None:
    assert admin_url("tcp:9100:interface=127.0.0.1") == "http://127.0.0.1:9100"
    assert admin_url("tcp:port=9100") == "http://127.0.0.1:9100"
    assert admin_url(r"ssl:9443:interface=\:\:1:privateKey=k.pem") == "https://[::1]:9443"
    with pytest.raises(ValueError, match="unix"):
        admin_url("unix:/run/a.sock")  # admin_target reaches it


@pytest_twisted.ensureDeferred
async def test_the_monitor_page_and_its_state(daemons: Daemons) -> None:
    daemon = await daemons.start(with_admin(daemon_config(daemons.next_folder())))
    for path, kind in (("/", "text/html"), ("/monitor.js", "text/javascript")):
        response = await treq.get(f"{daemon.admin_url}{path}")  # no data in it: no token
        assert response.code == 200
        assert response.headers.getRawHeaders("content-type")[0].startswith(kind)
        assert (
            "frame-ancestors 'none'" in response.headers.getRawHeaders("content-security-policy")[0]
        )
    assert (await treq.get(f"{daemon.admin_url}/router.ini")).code == 404
    alice = Browser()
    agent_id = (await register(alice, daemon.url, "alice"))["agent_id"]
    snapshot = await state(daemon)
    (row,) = snapshot["agents"]
    assert row["agent_id"] == agent_id and row["worker"] == "alice"
    assert (row["status"], row["connected"], row["last_heartbeat"]) == (Status.IN_TASK, False, None)
    assert snapshot["units"]["available"] == 9
    assert snapshot["recent"][0]["event"] == "registration"
    assert len(snapshot["throughput"]) == 30
    assert sum(s.get("registration", 0) for s in snapshot["throughput"]) == 1
    code, _ = await submit(alice, daemon.url, agent_id, {"label": "x"})
    assert code == 200
    (row,) = (await state(daemon))["agents"]  # no longer held: the router's record
    assert (row["status"], row["worker"]) == (Status.COMPLETED, "alice")
