"""The files workers upload with a submission: read from a multipart body, kept in the
router's upload folder under names of the router's own (a random hex stem and a short,
plain extension), so no name a worker sends ever becomes a path."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import IO, Any

import multipart

from architect.private import private_file, private_folder
from architect.router.errors import BadRequest

_STORED_NAME = re.compile(r"^[0-9a-f]{32}(\.[A-Za-z0-9]{1,10})?$")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}$")


class UploadFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = private_folder(folder)

    def read_multipart(
        self, body: IO[bytes], content_type: str
    ) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """The text fields of a multipart body, and an entry for each file, now stored."""
        _, options = multipart.parse_options_header(content_type)
        boundary = options.get("boundary")
        if not boundary:
            raise BadRequest("multipart body without a boundary")
        body.seek(0)
        fields: dict[str, str] = {}
        files: list[dict[str, Any]] = []
        try:
            for part in multipart.MultipartParser(body, boundary, charset="utf8"):
                if part.filename is None:
                    fields[part.name] = part.value
                else:
                    files.append(self._store(part))
                part.close()
        except multipart.MultipartError as e:
            raise BadRequest(f"malformed multipart body: {e}") from None
        return fields, files

    def _store(self, part: multipart.MultipartPart) -> dict[str, Any]:
        original = Path(part.filename or "").name
        match = _EXTENSION.search(original)
        stored = uuid.uuid4().hex + (match.group(0).lower() if match else "")
        target = self.folder / stored
        part.save_as(str(target))
        private_file(target)
        return {
            "fieldname": part.name,
            "originalname": original,
            "filename": stored,
            "mimetype": part.content_type,
            "size": target.stat().st_size,
        }

    def path_of(self, name: str) -> Path | None:
        """The stored file of that name; None for a name the router never gives, or none."""
        if not _STORED_NAME.match(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None
