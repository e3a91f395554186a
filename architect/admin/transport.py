"""One HTTP request to an admin listener, over TCP, a unix socket, or TLS with the
listener's own certificate pinned (the standard library's http.client: no reactor).

Pinning: the client trusts exactly the certificate file the ini names for the listener
(`certKey`), as its only trust anchor, and checks after the handshake that the listener
served that very certificate. A self-signed certificate thus works with verification on;
the host name is not checked, since no other certificate could pass.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from pathlib import Path

from architect.endpoints import AdminTarget


class AdminUnreachable(Exception):
    """No answer from the listener: the reason, in one line."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def pinned_context(cert_file: str) -> tuple[ssl.SSLContext, bytes]:
    """A TLS client context trusting only `cert_file`, and that certificate (DER)."""
    try:
        pem = Path(cert_file).read_text(encoding="ascii")
        der = ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----") :])
    except (OSError, ValueError) as e:
        raise AdminUnreachable(f"cannot read the listener's certificate {cert_file}: {e}") from e
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # pinned: only this very certificate passes (below)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the anchor
    context.load_verify_locations(cadata=der)
    return context, der


class _PinnedConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, cert_file: str, timeout: float) -> None:
        context, self.pinned = pinned_context(cert_file)
        super().__init__(host, port, timeout=timeout, context=context)

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        if self.sock.getpeercert(binary_form=True) != self.pinned:
            self.sock.close()
            raise ssl.SSLError("the listener served another certificate than the pinned one")


def _connection(target: AdminTarget, timeout: float) -> http.client.HTTPConnection:
    if target.unix_path is not None:
        return _UnixConnection(target.unix_path, timeout)
    if target.cert is not None:
        return _PinnedConnection(target.host, target.port, target.cert, timeout)
    return http.client.HTTPConnection(target.host, target.port, timeout=timeout)


def request(
    target: AdminTarget,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, bytes, str]:
    """(status code, body, Content-Type) of one request; AdminUnreachable if none came."""
    connection = _connection(target, timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    except (OSError, http.client.HTTPException) as e:
        raise AdminUnreachable(str(e) or type(e).__name__) from None
    finally:
        connection.close()
