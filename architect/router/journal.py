"""Journal: a separate router's submissions on disk until its backend has them.

In `off` mode every unit submission and every metadata submission is a line of JSON
appended to `submissions.jsonl` in `[router] journal_dir`, and it is durable (that
file and the uploaded files it names flushed to disk) before the worker is answered.
A line `{"done": id}` follows once the backend has it: committed, as a confirming
backend says, or written to the socket of one that confirms nothing (Mephisto's).
At start the file is read back: what is not done is pending, to be delivered again,
and the file is rewritten with only that; it is rewritten so whenever it grows far
past what is pending.

Flushes are grouped: lines written while one flush runs (in a thread, off the
reactor) all wait for the next one, so a burst of submissions costs a few flushes.
A line cut short by a crash was never flushed, so never acknowledged: it is skipped.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from architect.private import FILE_MODE, private_folder
from architect.protocol import Packet, ProtocolError, data_size, is_confirm_id

log = Logger()

FILE_NAME = "submissions.jsonl"

# Runs blocking work (the flushes) off the reactor; fires when done.
Offload = Callable[[Callable[[], None]], "Deferred[None]"]


def run_here(work: Callable[[], None]) -> Deferred[None]:
    """Blocking work on the calling thread (tests; a clock-driven hub)."""
    return maybeDeferred(work)


class FlushThread(Service):
    """The one thread a journal flushes in, as a service: it starts and stops with the
    router, and the journal is closed once the thread has finished its last flush."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="journal")
        self.journal: Journal | None = None

    def offload(self, work: Callable[[], None]) -> Deferred[None]:
        return deferToThreadPool(self.reactor, self.pool, work)

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        super().stopService()
        self.pool.stop()
        if self.journal is not None:
            self.journal.close()


class JournalFull(Exception):
    """More is pending than `[router] max_journal_bytes` allows."""


class JournalError(Exception):
    """The journal could not be written or flushed."""


@attrs.define(eq=False)
class Entry:
    """One journaled submission, pending until the backend has it."""

    confirm_id: str
    packet: Packet
    size: int  # protocol.data_size of its data
    files: tuple[Path, ...]  # the uploads it names, flushed with it
    sent_at: float | None = None  # when last sent to a confirming backend; None: not out


def _line(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def _fsync_path(path: Path, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return  # an upload the backend has kept and discarded meanwhile
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    def __init__(
        self,
        folder: Path,
        max_bytes: int,
        offload: Offload = run_here,
        rewrite_after_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.folder = private_folder(folder)
        self.path = folder / FILE_NAME
        self.max_bytes = max_bytes  # [router] max_journal_bytes: the pending entries' sizes
        self.offload = offload
        self.rewrite_after_bytes = rewrite_after_bytes
        self.pending: dict[str, Entry] = {}  # oldest first
        self.pending_bytes = 0
        self._life = secrets.token_hex(4)  # ids never repeat those of an earlier life
        self._count = 0
        self._waiting: list[tuple[Deferred[None], tuple[Path, ...]]] = []
        self._flushing = False
        self._fd = -1
        self._written = 0  # bytes in the file
        self._load()

    # --- start ---

    def _load(self) -> None:
        skipped = 0
        for record in self._records():
            if record is None:
                skipped += 1
            elif "done" in record:
                self._forget(record["done"])
            else:
                self._keep(record)
        if skipped:
            log.warn(
                "the router journal {path}: skipped {n} unreadable lines (one cut short by"
                " a crash was never acknowledged)",
                path=str(self.path),
                n=skipped,
            )
        if self.pending:
            log.info(
                "the router journal holds {n} submissions the backend has not confirmed:"
                " they go to it once it connects",
                n=len(self.pending),
            )
        self._rewrite()

    def _records(self) -> Iterator[dict[str, Any] | None]:
        try:
            with self.path.open("rb") as f:
                for raw in f:
                    try:
                        record = json.loads(raw)
                    except (ValueError, UnicodeDecodeError):
                        yield None
                        continue
                    yield record if isinstance(record, dict) else None
        except FileNotFoundError:
            return

    def _keep(self, record: dict[str, Any]) -> None:
        confirm_id = record.get("add")
        files = record.get("files")
        try:
            packet = Packet.from_dict(record.get("packet"))
        except ProtocolError:
            return
        if not is_confirm_id(confirm_id) or not isinstance(files, list):
            return
        assert isinstance(confirm_id, str)
        packet.confirm_id = confirm_id
        paths = tuple(Path(f) for f in files if isinstance(f, str))
        self._pend(Entry(confirm_id, packet, data_size(packet.data), paths))

    def _pend(self, entry: Entry) -> None:
        self.pending[entry.confirm_id] = entry
        self.pending_bytes += entry.size

    def _forget(self, confirm_id: object) -> Entry | None:
        entry = self.pending.pop(confirm_id, None) if isinstance(confirm_id, str) else None
        if entry is not None:
            self.pending_bytes -= entry.size
        return entry

    # --- writing ---

    def add(self, packet: Packet, files: tuple[Path, ...] = ()) -> tuple[Entry, Deferred[None]]:
        """Journal a submission: its entry (pending; the packet now carries its id) and a
        Deferred that fires once it is on disk (fails with JournalError if it cannot be).
        Raises JournalFull, or JournalError if it cannot even be written."""
        size = data_size(packet.data)
        if self.pending and self.pending_bytes + size > self.max_bytes:
            raise JournalFull(
                f"{len(self.pending)} submissions ({self.pending_bytes} bytes) are pending"
            )
        self._count += 1
        confirm_id = f"{self._life}-{self._count}"
        record = attrs.evolve(packet, confirm_id=None).to_dict()
        line = _line({"add": confirm_id, "packet": record, "files": [str(f) for f in files]})
        self._write(line)
        packet.confirm_id = confirm_id
        entry = Entry(confirm_id, packet, size, files)
        self._pend(entry)
        durable: Deferred[None] = Deferred()
        self._waiting.append((durable, files))
        self._flush_soon()
        return entry, durable

    def done(self, confirm_id: str) -> Entry | None:
        """The backend has it: no more pending (the line need not be flushed at once: a
        done line lost to a crash only means one more delivery, which the backend
        recognises)."""
        entry = self._forget(confirm_id)
        if entry is not None:
            try:
                self._write(_line({"done": confirm_id}))
            except JournalError as e:
                log.error("the router journal: {why}", why=str(e))
        return entry

    def _write(self, line: bytes) -> None:
        try:
            written = os.write(self._fd, line)
        except OSError as e:
            raise JournalError(f"cannot write {self.path}: {e.strerror}") from None
        if written != len(line):  # a full disk part way: the line is cut, never counted
            raise JournalError(f"cannot write {self.path}: the disk is full")
        self._written += written

    # --- flushing, grouped ---

    def _flush_soon(self) -> None:
        if self._flushing or not self._waiting:
            return
        batch, self._waiting = self._waiting, []
        self._flushing = True
        fd = self._fd
        files = {path for _, paths in batch for path in paths}

        def flush() -> None:
            for path in files:
                _fsync_path(path)
            for folder in {path.parent for path in files}:
                _fsync_path(folder, directory=True)
            os.fsync(fd)

        self.offload(flush).addBoth(self._flushed, batch)

    def _flushed(self, result: Failure | None, batch: list[tuple[Deferred[None], Any]]) -> None:
        self._flushing = False
        for durable, _ in batch:
            if isinstance(result, Failure):
                durable.errback(JournalError(f"cannot flush {self.path}: {result.value}"))
            else:
                durable.callback(None)
        if isinstance(result, Failure):
            log.critical("the router journal could not be flushed: {why}", why=result.value)
        if not self._waiting and self._written > max(
            self.rewrite_after_bytes, 4 * self.pending_bytes
        ):
            self._rewrite()
        self._flush_soon()

    def _rewrite(self) -> None:
        """The file anew with only what is pending (written beside it, flushed, renamed)."""
        fresh = self.path.with_name(FILE_NAME + ".new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, FILE_MODE)
        written = 0
        try:
            for entry in self.pending.values():
                record = attrs.evolve(entry.packet, confirm_id=None).to_dict()
                files = [str(f) for f in entry.files]
                line = _line({"add": entry.confirm_id, "packet": record, "files": files})
                written += os.write(fd, line)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.replace(fresh, self.path)
        _fsync_path(self.folder, directory=True)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._written = fd, written

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
