"""Endpoint strings: whether one is this host's alone (the admin listener's check), and the
URL the `architect admin` commands reach it at. Pure (no Twisted)."""

from __future__ import annotations

import re
from ipaddress import ip_address

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


def admin_url(listen: str) -> str:
    """The base URL (no trailing slash) of the admin listener of this endpoint string;
    ValueError for one the commands cannot reach (a unix socket)."""
    kind, positional, options = _parts(listen)
    if kind not in TCP_KINDS:
        raise ValueError(f"the commands reach only a tcp: or ssl: admin listener, not {kind}:")
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
