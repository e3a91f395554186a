"""A remote backend's way to the uploaded files: `GET /download_file/<name>` on its router,
showing its token. The only backend module that speaks HTTP.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from twisted.internet.defer import Deferred, fail
from twisted.web.client import Agent as HTTPClient
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from architect.backend.files import FileFetchError, check_name

# Seconds a remote download may take before it is given up.
DOWNLOAD_TIMEOUT = 60.0


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
        self.http = HTTPClient(reactor)

    def url_of(self, filename: str) -> str:
        return self.base + quote(check_name(filename), safe="")

    def fetch(self, filename: str) -> Deferred[bytes]:
        try:
            url = self.url_of(filename)
        except FileFetchError:
            return fail()
        headers = Headers()
        if self.token:
            headers.addRawHeader(b"Authorization", f"Bearer {self.token}".encode())
        d: Deferred[Any] = self.http.request(b"GET", url.encode("ascii"), headers)

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
