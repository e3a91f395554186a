"""The busiest POSTs, served without Klein's routing.

A py-spy profile of the router under registration load (S1) found Klein's routing and
rendering (werkzeug's URL map, its per-request adapters, two Deferred layers) at about a
tenth of the reactor thread for every `/request_agent`, more than the route itself. The
requests here are the same Twisted requests (`intake.py` has bounded and checked them),
answered by the same route methods and the same error handlers of `RouterWeb`; only the
lookup and the plumbing between them are ours:

- only `POST` to exactly one of the paths `RouterWeb.hot_routes` names (`/request_agent`,
  `/register_worker`, `/submit_task`, `/submit_metadata`), with no query string: anything
  else (another method, `/request_agent/`, `/request%5Fagent`, `?x=`) goes to Klein as
  before;
- errors go to `RouterWeb.router_error` (a RouterError) and else to
  `RouterWeb.unexpected_error`, in Klein's order; an error in those is Twisted's;
- the answer is written and the request finished as Klein does (`write`, `finish`),
  what they write sent together (`lean_channel.LeanChannel.answer_at_once`), and a
  browser that goes away cancels the route's Deferred, as in Klein.

`tests/test_hot_routes.py` sends the same normal and hostile requests to a router with
and without this shortcut and compares status, headers and body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from architect.router.errors import RouterError
from architect.router.lean_channel import LeanChannel

log = Logger()

Route = Callable[[IRequest], "Deferred[bytes]"]
ErrorHandler = Callable[[IRequest, Failure], bytes]


class HotRoute(Resource):
    """One route method, rendered as Klein would render it (one instance per route)."""

    isLeaf = True

    def __init__(self, route: Route, router_error: ErrorHandler, unexpected: ErrorHandler):
        super().__init__()
        self.route = route
        self.router_error = router_error
        self.unexpected = unexpected

    def render(self, request: IRequest) -> int:
        twisted_request: Request = request  # type: ignore[assignment]
        finished = [False]  # the answer was written, or the browser went away

        def on_finish(_: object) -> None:
            finished[0] = True

        twisted_request.notifyFinish().addBoth(on_finish)
        d: Deferred[bytes] = maybeDeferred(self.route, request)
        twisted_request.notifyFinish().addErrback(lambda _: d.cancel())

        def failed(failure: Failure) -> bytes | None:
            if finished[0]:  # nobody to answer
                if not failure.check(CancelledError):
                    log.failure("error after the request ended", failure)
                return None
            handlers: list[ErrorHandler] = []
            if failure.check(RouterError):
                handlers.append(self.router_error)
            handlers.append(self.unexpected)
            for handler in handlers:
                try:
                    return handler(request, failure)
                except Exception:
                    failure = Failure()
            twisted_request.processingFailed(failure)
            return None

        def respond(body: bytes | None) -> None:
            if body is not None:
                twisted_request.write(body)
            if not finished[0]:
                twisted_request.finish()

        def write(body: bytes | None) -> None:
            channel = twisted_request.channel
            if isinstance(channel, LeanChannel) and not finished[0]:
                channel.answer_at_once(lambda: respond(body))  # one send: lean_channel.py
            else:
                respond(body)

        d.addErrback(failed)
        d.addCallback(write)
        d.addErrback(lambda f: log.failure("error writing an answer", f))
        return NOT_DONE_YET


class HotRoutes:
    """Which requests skip Klein, and the resource that answers each."""

    def __init__(self, routes: dict[bytes, Route], router_error: Any, unexpected: Any) -> None:
        self.resources = {
            path: HotRoute(route, router_error, unexpected) for path, route in routes.items()
        }

    def resource_for(self, request: IRequest) -> IResource | None:
        """The hot route of `request`, or None for Klein to route it."""
        if request.method != b"POST" or request.uri != request.path:  # a query string
            return None
        return self.resources.get(request.path)
