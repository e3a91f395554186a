"""The files workers upload with a submission, in the router's upload folder.

A multipart body is read twice: first its fields and the sizes of its files, so the
agent and the bounds are checked before anything is stored, then its files, each
stored under a name of the router's own (`upload_names`). A request that fails
leaves nothing behind. Bounds: `max_upload_bytes_per_agent` (413), the folder's
`max_upload_dir_bytes` and the disk's `min_free_disk_bytes` (507). A file the
backend has kept is removed (`discard`).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs
import multipart
from twisted.logger import Logger

from architect.nul import holds_nul
from architect.private import private_file, private_folder
from architect.router.errors import BadRequest, InsufficientStorage, TooLarge
from architect.upload_names import (
    is_stored_name,
    is_upload_of,
    mark_of,
    new_upload_name,
    owner_mark,
)

log = Logger()


@attrs.frozen
class UploadBounds:
    per_agent: int  # bytes one agent may have in the folder at once
    folder: int  # bytes in the folder at once
    free_disk: int  # bytes the disk must keep free


class UploadFolder:
    def __init__(
        self,
        folder: Path,
        bounds: UploadBounds,
        free_bytes: Callable[[Path], int] | None = None,
    ) -> None:
        self.folder = private_folder(folder)
        self.bounds = bounds
        self.free_bytes = free_bytes or (lambda path: shutil.disk_usage(path).free)
        # Bytes kept, in all and by owner mark: counted once at start, then kept up to date.
        self._by_owner: dict[str, int] = {}
        self.used = 0
        for path in folder.iterdir():
            if path.is_file() and is_stored_name(path.name):
                self._count(path.name, path.stat().st_size)

    def _count(self, name: str, size: int) -> None:
        mark = mark_of(name)
        held = self._by_owner.get(mark, 0) + size
        if held > 0:
            self._by_owner[mark] = held
        else:  # (a file put there by hand since the start was never counted)
            self._by_owner.pop(mark, None)
        self.used = max(0, self.used + size)

    # --- a multipart body ---

    def read_fields(self, body: IO[bytes], content_type: str) -> tuple[dict[str, str], list[int]]:
        """The text fields of a multipart body, and the size of each file in it."""
        fields: dict[str, str] = {}
        sizes: list[int] = []
        for part in _parts(body, content_type):
            try:
                if holds_nul([part.name, part.filename, part.content_type]):  # architect/nul.py
                    raise BadRequest("a part's name, file name and type must not hold NUL")
                if part.filename is None:
                    fields[part.name] = _text_of(part)
                else:
                    sizes.append(part.size)
            finally:
                part.close()
        return fields, sizes

    def check_room(self, agent_id: str, sizes: list[int]) -> None:
        """Fails (413, 507) if files of these sizes would pass a bound."""
        wanted = sum(sizes)
        if not wanted:
            return
        held = self._by_owner.get(owner_mark(agent_id), 0)
        if held + wanted > self.bounds.per_agent:
            raise TooLarge(
                f"an agent's uploads may not pass {self.bounds.per_agent} bytes"
                f" ({held} already kept)"
            )
        if self.used + wanted > self.bounds.folder:
            log.warn("the upload folder is full ({n} bytes): an upload refused", n=self.used)
            raise InsufficientStorage("the router cannot keep more uploads now; try later")
        if self.free_bytes(self.folder) - wanted < self.bounds.free_disk:
            log.warn("the disk of the upload folder is nearly full: an upload refused")
            raise InsufficientStorage("the router's disk is nearly full; try later")

    def store_files(
        self, body: IO[bytes], content_type: str, agent_id: str
    ) -> list[dict[str, Any]]:
        """Store each file of the body as `agent_id`'s: an entry describing each. If one
        cannot be stored, none of them stays."""
        entries: list[dict[str, Any]] = []
        try:
            for part in _parts(body, content_type):
                if part.filename is not None:
                    entries.append(self._store(part, agent_id))
                part.close()
        except BaseException:
            self.remove([entry["filename"] for entry in entries])
            raise
        return entries

    def _store(self, part: multipart.MultipartPart, agent_id: str) -> dict[str, Any]:
        original = Path(part.filename or "").name
        stored = new_upload_name(agent_id, original)
        target = self.folder / stored
        part.save_as(str(target))
        private_file(target)
        size = target.stat().st_size
        self._count(stored, size)
        return {
            "fieldname": part.name,
            "originalname": original,
            "filename": stored,
            "mimetype": part.content_type,
            "size": size,
        }

    # --- stored files ---

    def path_of(self, name: str, agent_id: str | None = None) -> Path | None:
        """The stored file of that name (of that agent's, when one is named); None for a
        name the router never gives, another agent's, or none."""
        if not is_stored_name(name) or (agent_id is not None and not is_upload_of(name, agent_id)):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def remove(self, names: list[str]) -> None:
        for name in names:
            path = self.path_of(name)
            if path is not None:
                size = path.stat().st_size
                path.unlink(missing_ok=True)
                self._count(name, -size)

    def discard(self, name: str, agent_id: str) -> bool:
        """The backend kept this file of `agent_id`'s: it leaves the folder. False if there
        was no such file."""
        if self.path_of(name, agent_id) is None:
            return False
        self.remove([name])
        return True


def _text_of(part: multipart.MultipartPart) -> str:
    try:
        value: str = part.value
    except UnicodeDecodeError:
        raise BadRequest(f"the field {part.name[:100]!r} is not UTF-8 text") from None
    return value


def _parts(body: IO[bytes], content_type: str) -> Any:
    _, options = multipart.parse_options_header(content_type)
    boundary = options.get("boundary")
    if not boundary:
        raise BadRequest("multipart body without a boundary")
    body.seek(0)
    try:
        yield from multipart.MultipartParser(body, boundary, charset="utf8")
    except multipart.MultipartError as e:
        raise BadRequest(f"malformed multipart body: {e}") from None
