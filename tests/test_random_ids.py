"""Request and agent ids: version-4 UUIDs, none repeated, in a forked child too."""

from __future__ import annotations

import os
import uuid

import pytest

from architect import random_ids
from architect.random_ids import new_request_id


def test_ids_are_version_4_uuids_and_never_repeat() -> None:
    ids = [new_request_id() for _ in range(2000)]  # several blocks of the pool
    assert len(set(ids)) == len(ids)
    for one in ids:
        parsed = uuid.UUID(one)
        assert str(parsed) == one
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_the_text_is_what_uuid_makes_of_the_same_bytes() -> None:
    for _ in range(2000):
        raw = os.urandom(16)
        made = uuid.UUID(bytes=raw, version=4)
        assert random_ids.v4_hex(raw) == made.hex
    for raw in (bytes(16), b"\xff" * 16):  # every bit clear, every bit set
        assert random_ids.v4_hex(raw) == uuid.UUID(bytes=raw, version=4).hex


def test_a_forked_child_does_not_reuse_its_parents_block() -> None:
    new_request_id()  # a block is read, most of it unused
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(read)
        os.write(write, new_request_id().encode("ascii"))
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 100).decode("ascii")
    os.close(read)
    os.waitpid(pid, 0)
    assert child_id != new_request_id()  # what the parent's block gives next


def test_a_block_is_read_once_per_256_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def counted(n: int) -> bytes:
        reads.append(n)
        return real(n)

    random_ids._forget_pool()
    monkeypatch.setattr(random_ids.os, "urandom", counted)
    for _ in range(512):
        new_request_id()
    assert reads == [4096, 4096]


def test_agent_ids_come_from_the_same_blocks() -> None:
    from architect.backend.agent_registry import new_agent_id

    ids = {new_agent_id("p-") for _ in range(600)}
    assert len(ids) == 600
    for one in ids:
        assert one.startswith("p-") and uuid.UUID(hex=one[2:]).version == 4
