"""A remote backend's way to the uploaded files: `GET /download_file/<name>` on its router,
showing its token. The only backend module that speaks HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent as HTTPClient
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

from architect.backend.files import FileFetchError, check_name

log = Logger()

T = TypeVar("T")

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

        return self.delete(filename, agent_id).addCallbacks(done, kept)

    def delete(self, filename: str, agent_id: str) -> Deferred[bytes]:
        """`DELETE` the router's copy; fails if the router does not have it."""
        return self._ask(b"DELETE", filename, agent_id)

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


class DownloadsFromRouters:
    """Several routers share the run (architect/cluster/): an upload is on the one its
    submission came through, so each is asked in turn until one has it."""

    def __init__(self, routers: list[RouterDownloads]) -> None:
        self.routers = routers

    def fetch(self, filename: str, agent_id: str) -> Deferred[bytes]:
        return self._first(lambda router: router.fetch(filename, agent_id))

    def discard(self, filename: str, agent_id: str) -> Deferred[None]:
        def kept(failure: Failure) -> None:
            log.info(
                "the routers keep their copy of {name}: {why}", name=filename, why=failure.value
            )

        deleted = self._first(lambda router: router.delete(filename, agent_id))
        return deleted.addCallbacks(lambda _: None, kept)

    def _first(self, ask: Callable[[RouterDownloads], Deferred[T]]) -> Deferred[T]:
        async def each() -> T:
            failure: BaseException | None = None
            for router in self.routers:
                try:
                    return await ask(router)
                except FileFetchError as e:  # not on this router (404), or not reachable
                    failure = e
            assert failure is not None
            raise failure

        return Deferred.fromCoroutine(each())


def downloads_from(
    reactor: Any, router_urls: tuple[str, ...], token: str
) -> RouterDownloads | DownloadsFromRouters:
    """How a remote backend gets uploads: from its router, or from whichever has each."""
    routers = [RouterDownloads(reactor, url, token) for url in router_urls]
    return routers[0] if len(routers) == 1 else DownloadsFromRouters(routers)
