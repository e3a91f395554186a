"""The router's journal on a real folder: what is on disk survives, what is done goes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from architect.protocol import SUBMIT_METADATA, SUBMIT_UNIT, Packet
from architect.router.journal import FILE_NAME, Journal, JournalError, JournalFull


def submission(agent_id: str, answer: object = 1) -> Packet:
    return Packet(SUBMIT_UNIT, agent_id, {"answer": answer}, client_timestamp=12.5)


def fired(d: Deferred[None]) -> list[object]:
    got: list[object] = []
    d.addBoth(got.append)
    return got


class HeldFlushes:
    """An offload that runs each flush only when the test says so."""

    def __init__(self) -> None:
        self.works: list[tuple[Callable[[], None], Deferred[None]]] = []

    def __call__(self, work: Callable[[], None]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.works.append((work, d))
        return d

    def run_next(self) -> None:
        work, d = self.works.pop(0)
        work()
        d.callback(None)


def test_a_submission_is_on_disk_before_it_is_durable_and_comes_back_after_a_restart(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20)
    packet = submission("agent-1", {"text": "é", "n": [1, 2]})
    entry, durable = journal.add(packet)
    assert fired(durable) == [None]
    assert packet.confirm_id == entry.confirm_id
    journal.close()  # as a SIGKILL would leave it: no done line

    again = Journal(tmp_path, max_bytes=1 << 20)
    [back] = again.pending.values()
    assert back.confirm_id == entry.confirm_id
    assert (back.packet.packet_type, back.packet.subject_id) == (SUBMIT_UNIT, "agent-1")
    assert back.packet.data == {"answer": {"text": "é", "n": [1, 2]}}
    assert back.packet.client_timestamp == 12.5
    assert back.packet.confirm_id == entry.confirm_id


def test_what_is_done_is_not_delivered_again_and_the_file_is_rewritten_at_start(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20)
    first, _ = journal.add(submission("a-1"))
    second, _ = journal.add(Packet(SUBMIT_METADATA, "a-2", {"feedback": "ok"}))
    assert journal.done(first.confirm_id) is first
    assert journal.done(first.confirm_id) is None  # a repeated confirmation
    journal.close()

    again = Journal(tmp_path, max_bytes=1 << 20)
    assert list(again.pending) == [second.confirm_id]
    lines = (tmp_path / FILE_NAME).read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["add"] == second.confirm_id


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20)
    kept, _ = journal.add(submission("a-1"))
    journal.close()
    with (tmp_path / FILE_NAME).open("ab") as f:
        f.write(b'{"add": "x-1", "packet": {"packet_type": "submit_un')
    again = Journal(tmp_path, max_bytes=1 << 20)
    assert list(again.pending) == [kept.confirm_id]


def test_odd_lines_are_skipped_not_delivered(tmp_path: Path) -> None:
    odd = [
        b"[1, 2]\n",
        b'{"add": "x-1", "packet": {"packet_type": "no_such_type", "subject_id": "a"},'
        b' "files": []}\n',
        b'{"add": 7, "packet": {"packet_type": "submit_unit", "subject_id": "a"}, "files": []}\n',
        b'{"add": "x-2", "packet": {"packet_type": "submit_unit", "subject_id": "a"}}\n',
        b"\xff\xfe\n",
    ]
    (tmp_path / FILE_NAME).write_bytes(b"".join(odd))
    journal = Journal(tmp_path, max_bytes=1 << 20)
    assert journal.pending == {}


def test_ids_of_a_new_life_never_repeat_an_earlier_lifes(tmp_path: Path) -> None:
    first, _ = Journal(tmp_path, max_bytes=1 << 20).add(submission("a-1"))
    second, _ = Journal(tmp_path, max_bytes=1 << 20).add(submission("a-1"))
    assert first.confirm_id != second.confirm_id


def test_more_pending_than_the_bound_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=100)
    journal.add(submission("a-1", "x" * 60))
    with pytest.raises(JournalFull):
        journal.add(submission("a-2", "y" * 60))
    assert len(journal.pending) == 1
    # One alone may be larger than the bound (the body limit bounds it): never stuck.
    journal.done(next(iter(journal.pending)))
    journal.add(submission("a-3", "z" * 500))


def test_flushes_are_grouped(tmp_path: Path) -> None:
    flushes = HeldFlushes()
    journal = Journal(tmp_path, max_bytes=1 << 20, offload=flushes)
    _, first = journal.add(submission("a-1"))
    _, second = journal.add(submission("a-2"))
    _, third = journal.add(submission("a-3"))
    assert len(flushes.works) == 1  # the first flush runs; the others wait for the next
    flushes.run_next()
    assert fired(first) == [None] and not second.called and not third.called
    assert len(flushes.works) == 1
    flushes.run_next()
    assert second.called and third.called
    assert flushes.works == []


def test_a_failed_flush_fails_its_submissions(tmp_path: Path) -> None:
    def failing(work: Callable[[], None]) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        d.errback(OSError(5, "Input/output error"))
        return d

    journal = Journal(tmp_path, max_bytes=1 << 20, offload=failing)
    _, durable = journal.add(submission("a-1"))
    [failure] = fired(durable)
    assert isinstance(failure, Failure) and failure.check(JournalError)


def test_a_write_that_fails_raises_and_keeps_nothing(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20)
    journal.close()  # its file is no longer open: every write fails
    with pytest.raises(JournalError):
        journal.add(submission("a-1"))
    assert journal.pending == {}


def test_uploaded_files_are_flushed_with_their_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    upload = uploads / "file-1"
    upload.write_bytes(b"content")
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    journal = Journal(tmp_path / "journal", max_bytes=1 << 20)
    monkeypatch.setattr(os, "fsync", fsync)
    _, durable = journal.add(submission("a-1"), files=(upload, uploads / "gone-since"))
    monkeypatch.undo()
    assert fired(durable) == [None]
    assert str(upload) in synced and str(uploads) in synced
    assert str(tmp_path / "journal" / FILE_NAME) in synced
    journal.close()
    [back] = Journal(tmp_path / "journal", max_bytes=1 << 20).pending.values()
    assert back.files == (upload, uploads / "gone-since")


def test_the_file_is_rewritten_once_it_grows_far_past_what_is_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20, rewrite_after_bytes=2000)
    for n in range(40):
        entry, _ = journal.add(submission(f"a-{n}", "x" * 50))
        journal.done(entry.confirm_id)
    last, _ = journal.add(submission("last"))
    assert (tmp_path / FILE_NAME).stat().st_size < 2500
    journal.close()
    assert list(Journal(tmp_path, max_bytes=1 << 20).pending) == [last.confirm_id]


def test_a_packet_of_a_browser_never_carries_a_confirm_id_further() -> None:
    raw = {"packet_type": SUBMIT_UNIT, "subject_id": "a-1", "data": {}, "confirm_id": "x-1"}
    assert Packet.from_dict(raw).confirm_id is None
    assert Packet.from_dict(raw, with_confirm_id=True).confirm_id == "x-1"
    assert "confirm_id" not in Packet(SUBMIT_UNIT, "a-1").to_dict()
