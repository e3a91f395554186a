"""TLS: `listen = ssl:...` with key and certificate beside the config file, a real
handshake with a client that trusts only that certificate, and the start-up URL."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import pytest_twisted
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.ssl import Certificate
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

from architect.config import ConfigError, load_config
from architect.router.service import RouterService
from tests.clients import reactor
from tests.daemon import Daemons


def self_signed(folder: Path) -> bytes:
    """key.pem and cert.pem for `localhost` in `folder`; the certificate's PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (folder / "cert.pem").write_bytes(pem)
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pem


def tls_config(folder: Path) -> Path:
    ini = folder / "router.ini"
    ini.write_text(
        "[router]\n"
        "listen = ssl:0:privateKey=tls/key.pem:certKey=tls/cert.pem:interface=127.0.0.1\n"
        "[backend]\nmode = embedded\n"
    )
    return ini


@pytest_twisted.ensureDeferred
async def test_the_router_serves_https_with_keys_beside_its_config(
    tmp_path: Path, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf" / "tls").mkdir(parents=True)
    pem = self_signed(tmp_path / "conf" / "tls")
    config = load_config(tls_config(tmp_path / "conf"))
    assert f"privateKey={tmp_path / 'conf' / 'tls' / 'key.pem'}" in config.router.listen
    monkeypatch.chdir(tmp_path)  # the keys are found beside the ini, not in the cwd
    daemon = await daemons.start(config)
    router = daemon.service.getServiceNamed("router")
    assert isinstance(router, RouterService)
    assert router.url == f"https://127.0.0.1:{daemon.port}/"
    trusting = Agent(reactor, BrowserLikePolicyForHTTPS(Certificate.loadPEM(pem)))
    response = await treq.get(f"https://localhost:{daemon.port}/is_alive", agent=trusting)
    assert response.code == 200 and await response.json() == {"status": "Alive!"}
    # Over TLS the session cookie is one a page in a cross-site iframe (MTurk's) keeps.
    response = await treq.get(f"https://localhost:{daemon.port}/task_config.json", agent=trusting)
    assert response.code == 200
    await response.content()
    [cookie] = response.headers.getRawHeaders("set-cookie")
    assert cookie.endswith("; Path=/; HttpOnly; SameSite=None; Secure; Partitioned")


def test_a_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[router\] listen: privateKey: no file at"):
        load_config(tls_config(tmp_path))
