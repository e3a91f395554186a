"""Where the backend gets a submission's uploaded files from.

A submission names its files by the name the router stored them under
(`data["files"][i]["filename"]`). In embedded mode the router's upload folder
is right here and read directly; a remote backend fetches each file from the
router's `GET /download_file/<name>`, showing its token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

# Seconds a remote download may take before it is given up.
DOWNLOAD_TIMEOUT = 60.0


class UploadedFiles(Protocol):
    def fetch(self, filename: str) -> Deferred[bytes]:
        """The content of the uploaded file the router stored as `filename`."""
        ...


class FileFetchError(Exception):
    """An uploaded file could not be had."""


def _check_name(filename: object) -> str:
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
            path = self.upload_dir / _check_name(filename)
        except FileFetchError:
            return fail()

        def read() -> bytes:
            try:
                return path.read_bytes()
            except OSError as e:
                raise FileFetchError(f"cannot read {path}: {e.strerror}") from None

        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), read)


def download_base(router_url: str) -> str:
    """ws://host:port/path -> http://host:port/path/download_file/ (wss -> https)."""
    parts = urlsplit(router_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, path + "download_file/", "", ""))


class RouterDownloads:
    """Fetch uploads over HTTP from the router (remote mode), with the backend's token."""

    def __init__(self, reactor: Any, router_url: str, token: str = "") -> None:
        self.reactor = reactor
        self.base = download_base(router_url)
        self.token = token
        self.agent = Agent(reactor)

    def url_of(self, filename: str) -> str:
        return self.base + quote(_check_name(filename), safe="")

    def fetch(self, filename: str) -> Deferred[bytes]:
        try:
            url = self.url_of(filename)
        except FileFetchError:
            return fail()
        headers = Headers()
        if self.token:
            headers.addRawHeader(b"Authorization", f"Bearer {self.token}".encode())
        d: Deferred[Any] = self.agent.request(b"GET", url.encode("ascii"), headers)

        def got(response: Any) -> Deferred[bytes]:
            body: Deferred[bytes] = readBody(response)
            if response.code != 200:
                return body.addCallback(
                    lambda text: fail(
                        FileFetchError(f"GET {url} answered {response.code}: {text[:200]!r}")
                    )
                )
            return body

        d.addCallback(got)
        d.addTimeout(DOWNLOAD_TIMEOUT, self.reactor)
        return d
