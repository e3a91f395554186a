"""Where the backend gets a submission's uploaded files from.

A submission names its files by the name the router stored them under
(`data["files"][i]["filename"]`), and a submission may only bring files of its own
agent (the router enforces it). In embedded mode the router's upload folder is right
here (`architect.embedded.SharedUploads`); a remote backend fetches each file over
HTTP from the router (`downloads.RouterDownloads`, an edge module). Once kept, the
router's copy is discarded.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred


class UploadedFiles(Protocol):
    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        """The content of the file `agent_id` uploaded, which the router stored as
        `filename` (fails for another agent's)."""
        ...

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        """The file is kept beside the database now: the router may let it go."""
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
