"""Endpoint strings: whether one is this host's alone (the admin listener's check), and
where the `architect admin` commands reach it (`AdminTarget`). Pure (no Twisted)."""

from __future__ import annotations

import re
from ipaddress import ip_address

import attrs

_UNESCAPED_COLON = re.compile(r"(?<!\\):")
LOCAL_KINDS = ("unix",)  # a socket file: reached from this host only (its permissions)
TCP_KINDS = ("tcp", "tcp6", "ssl")


def _parts(listen: str) -> tuple[str, list[str], dict[str, str]]:
    kind, *rest = _UNESCAPED_COLON.split(listen)
    options = {
        key: value.replace("\\:", ":")
        for key, _, value in (part.partition("=") for part in rest if "=" in part)
    }
    positional = [part for part in rest if "=" not in part]
    return kind, positional, options


def is_loopback_only(listen: str) -> bool:
    """Whether an endpoint string listens on loopback alone (127.0.0.0/8, ::1, a unix
    socket): a tcp endpoint without `interface=` listens on every interface."""
    kind, _, options = _parts(listen)
    if kind in LOCAL_KINDS:
        return True
    if kind not in TCP_KINDS:
        return False
    host = options.get("interface", "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class AdminTarget:
    """How a client reaches an admin listener: a host and port (with TLS when `cert` names
    the listener's own certificate file, which the client pins), or a unix socket file."""

    url: str  # the base URL, for messages and for HTTP's Host
    host: str = ""
    port: int = 0
    unix_path: str | None = None
    cert: str | None = None  # ssl: the certificate the listener serves (certKey, or privateKey)


def admin_target(listen: str) -> AdminTarget:
    """Where the admin listener of this endpoint string is reached; ValueError for a kind
    the commands do not speak, or one naming no port (socket file, certificate)."""
    kind, positional, options = _parts(listen)
    if kind in LOCAL_KINDS:
        path = positional[0] if positional else options.get("address", "")
        if not path:
            raise ValueError(f"no socket file in {listen!r}")
        return AdminTarget(url=f"http+unix://{path}", unix_path=path)
    url = admin_url(listen)
    host, _, port = url.split("://", 1)[1].rpartition(":")
    cert = None
    if kind == "ssl":
        cert = options.get("certKey") or options.get("privateKey")
        if not cert:
            raise ValueError(f"no certKey (or privateKey) in {listen!r}")
    return AdminTarget(url=url, host=host.strip("[]"), port=int(port), cert=cert)


def admin_url(listen: str) -> str:
    """The base URL (no trailing slash) of a tcp: or ssl: admin listener of this endpoint
    string; ValueError for another kind (see admin_target for a unix socket)."""
    kind, positional, options = _parts(listen)
    if kind not in TCP_KINDS:
        raise ValueError(f"no URL for a {kind}: listener (only tcp:, tcp6:, ssl:)")
    port = positional[0] if positional else options.get("port", "")
    if not port.isdigit():
        raise ValueError(f"no port in {listen!r}")
    host = options.get("interface", "127.0.0.1").strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if kind == "ssl" else "http"
    return f"{scheme}://{host}:{port}"
