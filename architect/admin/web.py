"""The admin listener's HTTP face (Klein): `/metrics` (Prometheus), `/state` (the monitor
page's JSON), the monitor page itself (`/`, `/monitor.js`, `/monitor.css`), and the
run-time controls (`POST /control/<name>`, a JSON body, a JSON answer).

Everything but the page's own files needs `Authorization: Bearer <[admin] admin_token>`
when a token is set (compared in constant time); the page holds no data and asks for the
token itself. Answers are never cached and never framed by another site.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site

from architect.admin.collect import DaemonCollector
from architect.admin.controls import ControlError, Controls
from architect.admin.parts import DaemonParts
from architect.admin.state import MonitorState
from architect.metrics import Metrics
from architect.protocol import ProtocolError, decode_json

log = Logger()

PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "monitor.js": "text/javascript; charset=utf-8",
    "monitor.css": "text/css; charset=utf-8",
}
MAX_BODY = 64 * 1024  # a control's JSON body
MAX_UNITS_BODY = 16 * 1024 * 1024  # add_units' body: up to MAX_UNITS_ADDED units' data


class Unauthorized(Exception):
    pass


def _json(request: IRequest, value: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class AdminWeb:
    app = Klein()

    def __init__(self, parts: DaemonParts, metrics: Metrics, token: str) -> None:
        self.token = token
        self.metrics = metrics
        self.collector = DaemonCollector(parts)
        metrics.registry.register(self.collector)
        self.controls = Controls(parts)
        self.state = MonitorState(parts, metrics, self.collector)
        self.actions: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "expire_agent": self.controls.expire_agent,
            "block_worker": self.controls.block_worker,
            "unblock_worker": self.controls.unblock_worker,
            "grant": self.controls.grant,
            "revoke": self.controls.revoke,
            "add_units": self.controls.add_units,
            "settings": self._change_settings,
        }

    def site(self) -> Site:
        site = Site(self.app.resource())
        site.displayTracebacks = False
        return site

    def resource(self) -> Resource:
        return self.app.resource()

    # --- who may ---

    def _check(self, request: IRequest) -> None:
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        if not self.token:
            return
        given = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, credentials = given.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8"), self.token.encode("utf-8")
        )
        if not ok:
            raise Unauthorized()

    @app.handle_errors(Unauthorized)
    def unauthorized(self, request: IRequest, failure: Failure) -> bytes:
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="architect admin"')
        return _json(request, {"error": "a valid admin token is required"}, 401)

    @app.handle_errors(ControlError)
    def control_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, ControlError)
        return _json(request, {"error": str(error)}, error.code)

    @app.handle_errors(Exception)
    def unexpected(self, request: IRequest, failure: Failure) -> bytes:
        log.failure("the admin listener failed serving {path}", failure, path=request.path)
        return _json(request, {"error": "internal error"}, 500)

    # --- reading ---

    @app.route("/metrics", methods=["GET"])
    async def scrape(self, request: IRequest) -> bytes:
        self._check(request)
        await self.collector.refresh()
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.metrics.registry)

    @app.route("/state", methods=["GET"])
    async def snapshot(self, request: IRequest) -> bytes:
        self._check(request)
        return _json(request, await self.state.snapshot())

    # --- the page (no data in it: it asks for the token) ---

    @app.route("/", methods=["GET"])
    def index(self, request: IRequest) -> bytes:
        return self._page_file(request, "index.html")

    @app.route("/<name>", methods=["GET"])
    def page_file(self, request: IRequest, name: str) -> bytes:
        return self._page_file(request, name)

    def _page_file(self, request: IRequest, name: str) -> bytes:
        kind = PAGE_FILES.get(name)
        if kind is None:
            return _json(request, {"error": "not found"}, 404)
        request.setHeader(b"Content-Type", kind.encode("ascii"))
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(
            b"Content-Security-Policy",
            b"default-src 'self'; frame-ancestors 'none'",
        )
        return resources.files("architect.admin").joinpath("page", name).read_bytes()

    # --- acting ---

    @app.route("/control/<name>", methods=["POST"])
    async def control(self, request: IRequest, name: str) -> bytes:
        self._check(request)
        action = self.actions.get(name)
        if action is None:
            raise ControlError(404, f"no control {name!r} (controls: {', '.join(self.actions)})")
        limit = MAX_UNITS_BODY if name == "add_units" else MAX_BODY
        raw = request.content.read(limit + 1) if request.content is not None else b""
        if len(raw) > limit:
            raise ControlError(413, "the body is too large")
        try:
            body = decode_json(raw or b"{}")
        except ProtocolError:
            raise ControlError(400, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise ControlError(400, "the body must be a JSON object")
        answer = await action(body)
        log.info("admin control {name}: {answer}", name=name, answer=json.dumps(answer))
        return _json(request, answer)

    async def _change_settings(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.controls.change_settings(body)

    @app.route("/settings", methods=["GET"])
    def settings(self, request: IRequest) -> bytes:
        self._check(request)
        return _json(request, self.controls.settings())
