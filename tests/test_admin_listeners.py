"""`architect admin ...` reaches the admin listener as `[admin] listen` gives it: `tcp:`,
`unix:` (a socket file only its owner may open) and `ssl:` with a self-signed certificate
that the command pins (another certificate, even for the same name, is refused)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import attrs
import pytest_twisted

from architect.admin.transport import AdminUnreachable, pinned_context
from architect.config import AdminConfig, load_config
from architect.endpoints import admin_target
from tests.admin_support import ADMIN_TOKEN
from tests.daemon import Daemon, Daemons, daemon_config
from tests.test_admin_controls import architect_admin
from tests.test_tls import self_signed


async def start_with(daemons: Daemons, listen: str) -> Daemon:
    config = daemon_config(daemons.next_folder())
    admin = AdminConfig(listen=listen, admin_token=ADMIN_TOKEN)
    return await daemons.start(attrs.evolve(config, admin=admin))


def admin_ini(folder: Path, listen: str) -> Path:
    ini = folder / "admin.ini"
    ini.write_text(f"[admin]\nlisten = {listen}\nadmin_token = {ADMIN_TOKEN}\n")
    return ini


@pytest_twisted.ensureDeferred
async def test_a_unix_socket_listener_is_private_and_reached_by_the_command(
    daemons: Daemons,
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="adm", dir="/tmp"))  # a socket path is short
    sock = folder / "admin.sock"
    await start_with(daemons, f"unix:{sock}")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    # The ini names the socket relative to itself.
    ini = admin_ini(folder, "unix:admin.sock")
    assert load_config(ini).admin.listen == f"unix:{sock}"
    code, out = await architect_admin(ini, "settings")
    assert code == 0 and json.loads(out)["maximum_units_per_worker"] == 0
    code, out = await architect_admin(ini, "block", "kim")
    assert code == 0 and json.loads(out)["blocked"] is True
    code, _ = await architect_admin(admin_ini(folder, "unix:nothing.sock"), "state")
    assert code == 1


@pytest_twisted.ensureDeferred
async def test_an_ssl_listener_with_a_self_signed_certificate_is_pinned(
    daemons: Daemons, tmp_path: Path
) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    self_signed(tls)
    daemon = await start_with(
        daemons,
        f"ssl:0:privateKey={tls / 'key.pem'}:certKey={tls / 'cert.pem'}:interface=127.0.0.1",
    )
    port = daemon.service.getServiceNamed("admin").port_number
    listen = f"ssl:{port}:privateKey=tls/key.pem:certKey=tls/cert.pem:interface=127.0.0.1"
    code, out = await architect_admin(admin_ini(tmp_path, listen), "state")
    assert code == 0 and json.loads(out)["units"]["available"] == 10
    code, out = await architect_admin(admin_ini(tmp_path, listen), "metrics")
    assert code == 0 and "architect_registrations" in out
    # Another self-signed certificate for the same name: refused, no request is made.
    other = tmp_path / "other"
    other.mkdir()
    self_signed(other)
    wrong = listen.replace("tls/cert.pem", "other/cert.pem").replace("tls/key", "other/key")
    code, _ = await architect_admin(admin_ini(tmp_path, wrong), "block", "lee")
    assert code == 1
    worker = await daemon.database.find_or_create_worker("mock", "lee")
    assert await daemon.database.get_qualifications(worker.id) == {}


@pytest_twisted.ensureDeferred
async def test_a_tcp_listener_is_reached_by_the_command(daemons: Daemons, tmp_path: Path) -> None:
    daemon = await start_with(daemons, "tcp:0:interface=127.0.0.1")
    port = daemon.service.getServiceNamed("admin").port_number
    ini = admin_ini(tmp_path, f"tcp:{port}:interface=127.0.0.1")
    code, out = await architect_admin(ini, "settings")
    assert code == 0 and json.loads(out)["timeout"] == 0.0


def test_targets_of_each_kind(tmp_path: Path) -> None:
    assert admin_target("unix:/run/a.sock").unix_path == "/run/a.sock"
    assert admin_target("unix:address=/run/b.sock").unix_path == "/run/b.sock"
    tcp = admin_target("tcp:9100:interface=127.0.0.1")
    assert (tcp.host, tcp.port, tcp.cert) == ("127.0.0.1", 9100, None)
    pinned = admin_target(r"ssl:9443:interface=\:\:1:privateKey=/k.pem:certKey=/c\:x.pem")
    assert (pinned.host, pinned.port, pinned.cert) == ("::1", 9443, "/c:x.pem")
    assert admin_target("ssl:9443:privateKey=/k.pem").cert == "/k.pem"  # both in one file
    for bad in ("unix:", "ssl:9443", "tcp:interface=127.0.0.1", "npipe:x"):
        try:
            admin_target(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    try:
        pinned_context(str(tmp_path / "missing.pem"))
    except AdminUnreachable as e:
        assert "missing.pem" in str(e)
    else:
        raise AssertionError("no error")
