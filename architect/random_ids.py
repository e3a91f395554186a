"""Unguessable ids, random UUIDs (version 4): the router's request ids, the backend's
agent ids.

`uuid.uuid4` asks the OS for 16 random bytes per id, one system call per registration;
these come from the same source, read in blocks. A forked child starts with a block of
its own, never its parent's. The text is made from the bytes directly, as `uuid.UUID`
would make it (without building one: a few percent of a registration's cost).
"""

from __future__ import annotations

import os

_BLOCK = 4096  # bytes: 256 ids per read
_pool = b""
_at = 0


# The version and variant bits of a version-4 UUID (RFC 4122), as a 128-bit number.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_SET = (0x4000 << 64) | (0x8000 << 48)


def _random_bytes() -> bytes:
    global _pool, _at
    if _at + 16 > len(_pool):
        _pool, _at = os.urandom(_BLOCK), 0
    raw = _pool[_at : _at + 16]
    _at += 16
    return raw


def v4_hex(raw: bytes) -> str:
    """The 32 hex digits of the version-4 UUID made of 16 random bytes."""
    return "%032x" % ((int.from_bytes(raw, "big") & _CLEAR) | _SET)


def random_hex() -> str:
    """A random version-4 UUID's hex digits (an agent id, as `uuid.uuid4().hex`)."""
    return v4_hex(_random_bytes())


def new_request_id() -> str:
    """A request id, as Mephisto's are: the UUID's text with its hyphens."""
    h = v4_hex(_random_bytes())
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _forget_pool() -> None:
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)
