"""The run-time controls against real daemons, over the admin listener and through the
`architect admin` command: expire an agent, block and unblock a worker, grant and
revoke, change maximum_units_per_worker, allowed_concurrent and the live timeout."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from architect.admin import cli as admin_cli
from architect.cli import parser
from architect.config import BackendConfig, load_config
from architect.protocol import ALIVE, Status
from architect.qualifications import BLOCKED, parse_requirements
from tests.admin_support import ADMIN_TOKEN, control, register, sample, scrape, state, with_admin
from tests.clients import Browser, wait_for
from tests.daemon import Daemon, Daemons, daemon_config
from tests.engines import on_every_engine

LIVE = {"name": "ops", "module": "architect.demo.task"}


async def start(daemons: Daemons, **task: Any) -> Daemon:
    return await daemons.start(with_admin(daemon_config(daemons.next_folder(), task=task)))


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_expiring_an_agent_tells_its_page_and_returns_its_unit(daemons: Daemons) -> None:
    daemon = await start(daemons)
    alice = Browser()
    agent_id = (await register(alice, daemon.url, "alice"))["agent_id"]
    socket = await alice.open_socket(daemon.port)
    socket.send(ALIVE, agent_id)
    assert sample(await scrape(daemon), "architect_units", status="available") == 9

    code, answer = await control(daemon, "expire_agent", {"agent_id": agent_id})
    assert (code, answer) == (200, {"agent_id": agent_id, "status": Status.EXPIRED})
    await wait_for(lambda: Status.EXPIRED in socket.statuses(), "the page to hear it")
    assert await daemon.status(agent_id) == Status.EXPIRED
    assert sample(await scrape(daemon), "architect_units", status="available") == 10
    code, answer = await control(daemon, "expire_agent", {"agent_id": agent_id})
    assert code == 404 and "no agent" in answer["error"]


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_a_blocked_worker_is_refused_until_unblocked(daemons: Daemons) -> None:
    daemon = await start(daemons)
    code, answer = await control(daemon, "block_worker", {"worker": "bob"})
    assert (code, answer["blocked"]) == (200, True)
    refused = await register(Browser(), daemon.url, "bob")
    assert refused["agent_id"] is None and "not currently qualified" in refused["failure_reason"]
    others = await register(Browser(), daemon.url, "carol")
    assert others["agent_id"]
    code, answer = await control(daemon, "unblock_worker", {"worker": "bob"})
    assert (code, answer["blocked"]) == (200, False)
    assert (await register(Browser(), daemon.url, "bob", "a2"))["agent_id"]
    code, answer = await control(daemon, "unblock_worker", {"worker": "bob"})
    assert code == 409 and "not blocked" in answer["error"]
    code, answer = await control(daemon, "unblock_worker", {"worker": "nobody"})
    assert code == 404


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_grant_and_revoke_decide_registrations(daemons: Daemons) -> None:
    daemon = await start(daemons, qualifications=parse_requirements('[["english", ">=", 2]]'))
    assert (await register(Browser(), daemon.url, "dora"))["agent_id"] is None
    code, answer = await control(
        daemon, "grant", {"worker": "dora", "qualification": "english", "value": 3}
    )
    assert (code, answer["value"]) == (200, 3)
    assert (await register(Browser(), daemon.url, "dora", "a2"))["agent_id"]
    code, _ = await control(daemon, "revoke", {"worker": "dora", "qualification": "english"})
    assert code == 200
    assert (await register(Browser(), daemon.url, "dora", "a3"))["agent_id"] is None
    code, answer = await control(daemon, "revoke", {"worker": "dora", "qualification": "english"})
    assert code == 404
    code, answer = await control(daemon, "grant", {"worker": "dora"})
    assert code == 400 and "qualification" in answer["error"]


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_limits_change_at_run_time(daemons: Daemons) -> None:
    daemon = await start(daemons)
    erin = Browser()
    assert (await register(erin, daemon.url, "erin", "a1"))["agent_id"]
    code, answer = await control(daemon, "settings", {"allowed_concurrent": 1})
    assert code == 200 and answer["allowed_concurrent"] == 1
    refused = await register(erin, daemon.url, "erin", "a2")
    assert "concurrently" in refused["failure_reason"]
    code, answer = await control(
        daemon, "settings", {"allowed_concurrent": 0, "maximum_units_per_worker": 1}
    )
    assert answer == {"maximum_units_per_worker": 1, "allowed_concurrent": 0, "timeout": 0.0}
    refused = await register(erin, daemon.url, "erin", "a3")
    assert "maximum amount" in refused["failure_reason"]
    code, answer = await control(daemon, "settings", {"maximum_units_per_worker": 0})
    assert (await register(erin, daemon.url, "erin", "a4"))["agent_id"]
    for bad in ({"allowed_concurrent": -1}, {"allowed_concurrent": 1.5}, {"units": 3}, {}):
        code, answer = await control(daemon, "settings", bad)
        assert code == 400, bad
    assert (await state(daemon))["settings"]["maximum_units_per_worker"] == 0


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_the_live_timeout_changes_for_assignments_starting_afterwards(
    daemons: Daemons,
) -> None:
    daemon = await start(daemons, **LIVE)
    frank = Browser()
    before = (await register(frank, daemon.url, "frank", "a1"))["agent_id"]
    code, answer = await control(daemon, "settings", {"timeout": 0.3})
    assert code == 200 and answer["timeout"] == 0.3
    after = (await register(Browser(), daemon.url, "gina", "a2"))["agent_id"]
    await wait_for(lambda: daemon.has_status(after, Status.TIMEOUT), "gina's room to time out")
    assert await daemon.status(before) == Status.IN_TASK


@pytest_twisted.ensureDeferred
async def test_a_router_alone_has_no_controls(daemons: Daemons) -> None:

    config = with_admin(daemon_config(daemons.next_folder()))
    router = await daemons.start(attrs.evolve(config, backend=BackendConfig(mode="off")))
    code, answer = await control(router, "block_worker", {"worker": "x"})
    assert code == 409 and "no backend" in answer["error"]
    code, answer = await control(router, "no_such", {})
    assert code == 404


def ini_for(daemon: Daemon, folder: Path, token: str = ADMIN_TOKEN) -> Path:
    port = daemon.admin_url.rsplit(":", 1)[1]
    ini = folder / "admin.ini"
    ini.write_text(f"[admin]\nlisten = tcp:{port}:interface=127.0.0.1\nadmin_token = {token}\n")
    return ini


async def architect_admin(ini: Path, *argv: str) -> tuple[int, str]:
    """`architect admin ... --config ini` (in a thread: the daemon runs in this reactor)."""
    args = parser().parse_args(["admin", "--config", str(ini), *argv])
    out = io.StringIO()
    code = await deferToThread(admin_cli.run, args, load_config(ini), out)
    return code, out.getvalue()


@on_every_engine
@pytest_twisted.ensureDeferred
async def test_the_architect_admin_command(
    daemons: Daemons, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = await start(daemons)
    ini = ini_for(daemon, tmp_path)
    code, out = await architect_admin(ini, "block", "hana")
    assert code == 0 and json.loads(out)["blocked"] is True
    worker = await daemon.database.find_or_create_worker("mock", "hana")
    assert BLOCKED in await daemon.database.get_qualifications(worker.id)
    code, out = await architect_admin(ini, "set", "maximum_units_per_worker=2", "timeout=60")
    assert code == 0 and json.loads(out)["maximum_units_per_worker"] == 2
    assert daemon.pool.settings.timeout == 60
    code, out = await architect_admin(ini, "grant", "ivan", "english", '"fluent"')
    assert code == 0 and json.loads(out)["value"] == "fluent"
    code, out = await architect_admin(ini, "revoke", "ivan", "english")
    assert code == 0
    agent_id = (await register(Browser(), daemon.url, "jo"))["agent_id"]
    code, out = await architect_admin(ini, "expire", agent_id)
    assert code == 0 and json.loads(out)["status"] == Status.EXPIRED
    code, out = await architect_admin(ini, "state")
    assert code == 0 and json.loads(out)["units"]["available"] == 10
    code, out = await architect_admin(ini, "metrics")
    assert code == 0 and "architect_registrations_total" in out
    code, out = await architect_admin(ini, "settings")
    assert code == 0 and json.loads(out)["timeout"] == 60
    # Failures: one line each, non-zero.
    capsys.readouterr()
    code, _ = await architect_admin(ini, "expire", "no-such-agent")
    assert code == 1 and "answered 404" in capsys.readouterr().err
    code, _ = await architect_admin(ini_for(daemon, tmp_path, token="wrong"), "state")
    assert code == 1 and "answered 401" in capsys.readouterr().err
    code, _ = await architect_admin(ini, "set", "timeout")
    assert code == 1 and "KEY=VALUE" in capsys.readouterr().err


def test_the_command_without_an_admin_listener(tmp_path: Path) -> None:
    ini = tmp_path / "router.ini"
    ini.write_text("[router]\n")
    args = parser().parse_args(["admin", "--config", str(ini), "state"])
    assert admin_cli.run(args, load_config(ini), io.StringIO()) == 1
