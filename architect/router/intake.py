"""What the router refuses before any route sees a request.

- A body over its limit. The limit is known from the headers alone: a multipart upload
  to a submission route may reach `max_body_bytes`, every other body `max_json_bytes`.
  A request whose Content-Length is over it is answered at once, its body never read;
  a chunked body is cut off once it passes it. Either way the connection is closed
  after the answer, since the rest of the body would otherwise be read as the next
  request.
- A URL (path or Host) that is not UTF-8: Klein would answer it as text and log a
  traceback for each.

This module decides and refuses; what each refusal is answered with (status, JSON)
is the HTTP edge's (`web.py`), given to the Site as `refusal_page`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from io import BytesIO
from typing import Any, BinaryIO, cast

import attrs
from twisted.web.iweb import IAccessLogFormatter, IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from architect.router.connections import TimelyHeaders
from architect.router.errors import BadRequest, RouterError, TooLarge

# A body shorter than this is kept in memory, a longer one in a temporary file.
IN_MEMORY_BODY = 100_000

# The routes that take multipart uploads, as the request line names them.
UPLOAD_PATHS = frozenset({b"/submit_task", b"/submit_metadata"})


def is_multipart(content_type: bytes | None) -> bool:
    return (content_type or b"").lower().startswith(b"multipart/form-data")


@attrs.frozen
class BodyLimits:
    json: int  # bytes: [router] max_json_bytes
    multipart: int  # bytes: [router] max_body_bytes

    def of(self, target: bytes, content_type: bytes | None) -> int:
        """The limit of a request to `target` (its request line's) of this Content-Type.
        Anything but an exact upload route gets the smaller one."""
        path = target.split(b"?", 1)[0]
        if path in UPLOAD_PATHS and is_multipart(content_type):
            return self.multipart
        return self.json


class BodyTooLarge(Exception):
    """A chunked body passed its limit (raised to the channel, which answers)."""


class LimitedRequest(Request):
    """A request that keeps no more of its body than its limit; `refused`, once the
    channel refused it, says why."""

    body_limit = 0  # bytes; set by the channel once the headers are in
    refused: RouterError | None = None

    def handleContentChunk(self, data: bytes) -> None:
        assert self.content is not None
        if self.content.tell() + len(data) > self.body_limit:
            raise BodyTooLarge()
        super().handleContentChunk(data)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the body is larger than {limit} bytes")


class BoundedChannel(TimelyHeaders):
    """An HTTP connection on which a body over its limit is answered without being read,
    and the connection closed after the answer (and whose headers have a deadline:
    connections.TimelyHeaders)."""

    site: BoundedSite  # set by the Site that built it
    _refused = False

    def connectionMade(self) -> None:
        self.header_timeout = self.site.header_timeout
        super().connectionMade()

    def allHeadersReceived(self) -> None:
        request = self.requests[-1]
        assert isinstance(request, LimitedRequest)
        request.body_limit = self.site.limits.of(self._path, request.getHeader(b"content-type"))
        if self.length is None or self.length <= request.body_limit:
            super().allHeadersReceived()
            return
        # No 100 Continue and no room for it: with a length of 0 the request is complete
        # as it is, and `lineReceived` hands it on at once, to be answered.
        request.gotLength(0)
        self.length = 0
        self._refuse(request, _too_large(request.body_limit))

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # what follows a refused body is not read
        try:
            super().rawDataReceived(data)
        except BodyTooLarge:
            request = self.requests[-1]
            assert isinstance(request, LimitedRequest)
            self._refuse(request, _too_large(request.body_limit))
            self.allContentReceived()  # answered now, with what was kept (never read)

    def _refuse(self, request: LimitedRequest, error: RouterError) -> None:
        self._refused = True
        self.persistent = False  # closed once answered: the rest of the body is not read
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        request.refused = error


def _url_problem(request: IRequest) -> RouterError | None:
    try:
        b"/".join(request.postpath or []).decode("utf-8")  # as Klein will read it
        request.getRequestHostname().decode("utf-8")
    except UnicodeDecodeError:
        return BadRequest("the URL must be UTF-8 text")
    return None


class BoundedSite(Site):
    """A Site of BoundedChannels whose refusals are answered by `refusal_page`."""

    # (Twisted types this as the factory of its wrapper that can switch to HTTP/2 after a
    # TLS negotiation; the router speaks HTTP/1.1, the wrapper's default channel.)
    protocol = cast("Callable[[], Any]", BoundedChannel)
    header_timeout = TimelyHeaders.header_timeout

    def __init__(
        self,
        resource: IResource,
        limits: BodyLimits,
        refusal_page: Callable[[RouterError], IResource],
        logFormatter: IAccessLogFormatter | None = None,
        reactor: Any = None,
    ) -> None:
        # Bodies are read by the routes themselves (JSON, or multipart with our own
        # parser): Twisted's form parsing of every POST would only cost time (its
        # Content-Type parsing alone was an eighth of the router's CPU under load).
        # `reactor`: whose clock the channels' timers (idle, header deadline) run on.
        super().__init__(
            resource, parsePOSTFormSubmission=False, logFormatter=logFormatter, reactor=reactor
        )
        self.requestFactory = LimitedRequest
        self.limits = limits
        self.refusal_page = refusal_page
        # The busiest routes, found without the root resource's routing (hot_routes.py).
        self.shortcut: Callable[[IRequest], IResource | None] = lambda request: None

    def getContentFile(self, length: int | None) -> BinaryIO:
        """Where a request's body is kept: in memory while small, else in a temporary file
        (Twisted's own rule). Twisted asks its Site for this first, and a Site without
        it costs a caught AttributeError per request (2 % of the router under S1)."""
        if length is not None and length < IN_MEMORY_BODY:
            return BytesIO()
        return tempfile.TemporaryFile()

    def getResourceFor(self, request: IRequest) -> IResource:
        refused = request.refused if isinstance(request, LimitedRequest) else None
        problem = refused or _url_problem(request)
        if problem is not None:
            return self.refusal_page(problem)
        hot = self.shortcut(request)
        if hot is not None:
            return hot
        resource: IResource = super().getResourceFor(request)
        return resource
