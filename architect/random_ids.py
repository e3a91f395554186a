"""Unguessable ids, random UUIDs (version 4): the router's request ids, the backend's
agent ids.

`uuid.uuid4` asks the OS for 16 random bytes per id, one system call per registration;
these come from the same source, read in blocks. A forked child starts with a block of
its own, never its parent's.
"""

from __future__ import annotations

import os
import uuid

_BLOCK = 4096  # bytes: 256 ids per read
_pool = b""
_at = 0


def random_uuid() -> uuid.UUID:
    global _pool, _at
    if _at + 16 > len(_pool):
        _pool, _at = os.urandom(_BLOCK), 0
    raw = _pool[_at : _at + 16]
    _at += 16
    return uuid.UUID(bytes=raw, version=4)


def new_request_id() -> str:
    """A request id, as Mephisto's are: the UUID's text with its hyphens."""
    return str(random_uuid())


def _forget_pool() -> None:
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)
