"""`[cluster] redis = redis://host:port/db` -> its parts, and whether the client is installed."""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

import attrs


@attrs.frozen
class RedisAddress:
    host: str
    port: int
    db: int
    password: str | None


def parse_redis_url(url: str) -> RedisAddress:
    """Raise ValueError saying what is wrong with the URL."""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"{url!r} must start with redis://")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    path = parts.path.strip("/")
    if path and not (path.isdigit() and int(path) < 16):
        raise ValueError(f"{url!r}: the database must be a number from 0 to 15")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: no query or fragment expected")
    return RedisAddress(parts.hostname, port, int(path or 0), parts.password)


def redis_client_missing() -> str:
    """Empty when txredisapi can be imported, else what to install."""
    if importlib.util.find_spec("txredisapi") is None:
        return "needs the Redis client: pip install 'architect-router[cluster]' (txredisapi)"
    return ""
