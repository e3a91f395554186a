"""Where the backend gets a submission's uploaded files from.

A submission names its files by the name the router stored them under
(`data["files"][i]["filename"]`). In embedded mode the router's upload folder
is right here and read directly (`UploadDirFiles`); a remote backend fetches each
file over HTTP from the router (`downloads.RouterDownloads`, an edge module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool


class UploadedFiles(Protocol):
    def fetch(self, filename: str) -> Deferred[bytes]:
        """The content of the uploaded file the router stored as `filename`."""
        ...


class FileFetchError(Exception):
    """An uploaded file could not be had."""


def check_name(filename: object) -> str:
    if (
        not isinstance(filename, str)
        or not filename
        or filename in (".", "..")
        or any(c in filename for c in "/\\\0")
    ):
        raise FileFetchError(f"{filename!r} is not a plain uploaded-file name")
    return filename


class UploadDirFiles:
    """Read uploads straight from the router's upload folder (embedded mode)."""

    def __init__(self, reactor: Any, upload_dir: Path) -> None:
        self.reactor = reactor
        self.upload_dir = upload_dir

    def fetch(self, filename: str) -> Deferred[bytes]:
        try:
            path = self.upload_dir / check_name(filename)
        except FileFetchError:
            return fail()

        def read() -> bytes:
            try:
                return path.read_bytes()
            except OSError as e:
                raise FileFetchError(f"cannot read {path}: {e.strerror}") from None

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), read)
