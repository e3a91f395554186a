"""Where submissions go: `SubmissionStore` is what the ClientIOHandler uses.

`StoredSubmissions` keeps them in the database: each kind (unit, onboarding,
metadata) with its uploaded files, fetched from the router and written beside
the database. Its Deferreds fire only once the submission is committed, and a
submission delivered twice (same `dedupe_key`) is stored once, across
restarts too.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from architect.backend.files import FileFetchError, UploadedFiles
from architect.lifecycle import UnitStatus
from architect.log_text import capped, cut, printable
from architect.nul import holds_nul
from architect.protocol import Status
from architect.storage import Database, SubmissionFile, SubmissionKind

log = Logger()


def names_files(data: dict[str, Any]) -> bool:
    """Whether a submission names uploaded files, which are fetched before it is stored."""
    entries = data.get("files")
    return isinstance(entries, list) and bool(entries)


class SubmissionStore(Protocol):
    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None,
        completes: bool = False,
    ) -> Deferred[None]:
        """With `completes`, the agent's `completed` (and its unit's) is committed with the
        submission: the recorder need not write it again (Agent.stored_status). Meant for a
        submission naming no files, whose transaction is issued before this returns."""
        ...

    def save_onboarding(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any], dedupe_key: str | None
    ) -> Deferred[None]: ...

    def save_metadata(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any], dedupe_key: str | None
    ) -> Deferred[None]: ...

    def has_unit_submission(self, agent_id: str) -> Deferred[bool]:
        """Whether a unit submission of the agent is kept."""
        ...

    def discard_uploads(self, agent_id: str, data: dict[str, Any]) -> None:
        """A submission refused: the router's copies of the files it names may go."""
        ...


class StoredSubmissions:
    """Submissions in the database, files beside it."""

    def __init__(self, database: Database, files: UploadedFiles | None) -> None:
        self.database = database
        self.files = files

    def save_unit_submission(
        self,
        agent_id: str,
        worker_id: str | None,
        data: dict[str, Any],
        dedupe_key: str | None,
        completes: bool = False,
    ) -> Deferred[None]:
        return self._saved(SubmissionKind.UNIT, agent_id, data, dedupe_key, completes)

    def save_onboarding(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any], dedupe_key: str | None
    ) -> Deferred[None]:
        return self._saved(SubmissionKind.ONBOARDING, agent_id, data, dedupe_key)

    def save_metadata(
        self, agent_id: str, worker_id: str | None, data: dict[str, Any], dedupe_key: str | None
    ) -> Deferred[None]:
        return self._saved(SubmissionKind.METADATA, agent_id, data, dedupe_key)

    def has_unit_submission(self, agent_id: str) -> Deferred[bool]:
        found = self.database.list_submissions(agent_id=agent_id, kind=SubmissionKind.UNIT)
        return found.addCallback(bool)

    def discard_uploads(self, agent_id: str, data: dict[str, Any]) -> None:
        entries = data.get("files")
        if self.files is None or not isinstance(entries, list):
            return
        for entry in entries:
            filename = entry.get("filename") if isinstance(entry, dict) else None
            if isinstance(filename, str):  # only the agent's own uploads are found
                self.files.discard(filename, agent_id)

    def _saved(
        self,
        kind: str,
        agent_id: str,
        data: dict[str, Any],
        dedupe_key: str | None,
        completes: bool = False,
    ) -> Deferred[None]:
        """Stored once committed. Without files to fetch first, straight to the database
        (a submission's common case: no coroutine to resume on the way back)."""
        if names_files(data):
            return Deferred.fromCoroutine(
                self._save_with_files(kind, agent_id, data, dedupe_key, completes)
            )
        try:
            stored = self._store(kind, agent_id, data, dedupe_key, [], completes)
        except Exception:
            return fail()
        return stored.addCallback(self._after_store, kind, agent_id, [])

    async def _save_with_files(
        self,
        kind: str,
        agent_id: str,
        data: dict[str, Any],
        dedupe_key: str | None,
        completes: bool,
    ) -> None:
        fetched = await self._fetch_files(agent_id, data)
        stored = await self._store(
            kind, agent_id, data, dedupe_key, [kept for _, kept in fetched], completes
        )
        self._after_store(stored, kind, agent_id, fetched)

    def _store(
        self,
        kind: str,
        agent_id: str,
        data: dict[str, Any],
        dedupe_key: str | None,
        files: list[SubmissionFile],
        completes: bool,
    ) -> Deferred[bool]:
        done = (Status.COMPLETED, UnitStatus.COMPLETED) if completes else (None, None)
        return self.database.store_submission(agent_id, kind, data, dedupe_key, files, *done)

    def _after_store(
        self,
        stored: bool,
        kind: str,
        agent_id: str,
        fetched: list[tuple[str, SubmissionFile]],
    ) -> None:
        # Committed: the router's copies may go (the worker does not wait for it).
        for name, _ in fetched:
            if self.files is not None:
                self.files.discard(name, agent_id)
        if not stored:
            log.info(
                "a repeated {kind} submission of agent {agent_id}: kept once",
                kind=kind,
                agent_id=agent_id,
            )
            for _, file in fetched:  # the copies the first delivery did not need
                (self.database.data_dir / file.stored_path).unlink(missing_ok=True)

    async def _fetch_files(
        self, agent_id: str, data: dict[str, Any]
    ) -> list[tuple[str, SubmissionFile]]:
        """Each file of its agent's the submission names, kept beside the database.

        A file that cannot be had is logged and left out: the rest of the
        submission is still stored (its `files` entries still describe it).
        """
        if not names_files(data):
            return []
        entries = data["files"]
        stored: list[tuple[str, SubmissionFile]] = []  # (the router's name, the kept file)
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            filename = entry.get("filename")
            original = entry.get("originalname") or filename
            mimetype = entry.get("mimetype") or "application/octet-stream"
            try:
                if not isinstance(filename, str):
                    raise FileFetchError(f"a file entry without a filename: {capped(entry)}")
                if holds_nul([original, mimetype]):  # from any router: architect/nul.py
                    raise FileFetchError("a NUL in the file's original name or type")
                if self.files is None:
                    raise FileFetchError("this backend has no way to fetch uploaded files")
                content = await self.files.fetch(filename, agent_id)
                kept = await self.database.write_file(str(original), content, str(mimetype))
                stored.append((filename, kept))
            except FileFetchError as e:  # expected: a file the worker named is not to be had
                log.warn(
                    "could not keep the file {filename} of agent {agent_id}'s submission: {why}",
                    filename=printable(cut(str(filename), 200)),
                    agent_id=agent_id,
                    why=printable(cut(str(e))),
                )
            except Exception:
                log.failure(
                    "could not keep the file {filename} of agent {agent_id}'s submission",
                    filename=filename,
                    agent_id=agent_id,
                )
        return stored
