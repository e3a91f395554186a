"""A remote backend's way to the uploaded files: `GET /download_file/<name>` on its router,
showing its token. The only backend module that speaks HTTP.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent as HTTPClient
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from architect.backend.files import FileFetchError, check_name

log = Logger()

# Seconds a remote download may take before it is given up.
DOWNLOAD_TIMEOUT = 60.0


def download_base(router_url: str) -> str:
    """ws://host:port/path -> http://host:port/path/download_file/ (wss -> https)."""
    parts = urlsplit(router_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((scheme, parts.netloc, path + "download_file/", "", ""))


class RouterDownloads:
    """Fetch uploads over HTTP from the router (remote mode), with the backend's token:
    `GET /download_file/<name>?agent=<id>`, and `DELETE` once the file is kept (a router
    that has no such route, Mephisto's, keeps its copy)."""

    def __init__(self, reactor: Any, router_url: str, token: str = "") -> None:
        self.reactor = reactor
        self.base = download_base(router_url)
        self.token = token
        self.http = HTTPClient(reactor)

    def url_of(self, filename: str, agent_id: str) -> str:
        return (
            self.base + quote(check_name(filename), safe="") + "?" + urlencode({"agent": agent_id})
        )

    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        return self._ask(b"GET", filename, agent_id)

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        def done(_: bytes) -> None:
            return None

        def kept(failure: Failure) -> None:
            log.info("the router keeps its copy of {name}: {why}", name=filename, why=failure.value)

        return self._ask(b"DELETE", filename, agent_id).addCallbacks(done, kept)

    def _ask(self, method: bytes, filename: str, agent_id: str) -> Deferred[bytes]:
        try:
            url = self.url_of(filename, agent_id)
        except FileFetchError:
            return fail()
        headers = Headers()
        if self.token:
            headers.addRawHeader(b"Authorization", f"Bearer {self.token}".encode())
        d: Deferred[Any] = self.http.request(method, url.encode("ascii"), headers)

        def got(response: Any) -> Deferred[bytes]:
            body: Deferred[bytes] = readBody(response)
            if response.code != 200:
                what = f"{method.decode()} {url.split('?')[0]}"
                return body.addCallback(
                    lambda text: fail(
                        FileFetchError(f"{what} answered {response.code}: {text[:200]!r}")
                    )
                )
            return body

        d.addCallback(got)
        d.addTimeout(DOWNLOAD_TIMEOUT, self.reactor)
        return d
