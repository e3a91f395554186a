"""Klein routes: REST -> hub; uploads and downloads; static files; the WebSocket at "/"."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from klein import Klein
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter, IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from zope.interface import provider

from architect.config import RouterConfig
from architect.nul import NUL, holds_nul
from architect.protocol import (
    MAX_ID_LENGTH,
    SUBMIT_METADATA,
    SUBMIT_UNIT,
    ProtocolError,
    as_timestamp,
    compact_json,
    decode_json,
)
from architect.router.errors import (
    BackendTimeout,
    BadRequest,
    Forbidden,
    InsufficientStorage,
    MethodNotAllowed,
    NoBackend,
    NotFound,
    Refused,
    RouterError,
    TooLarge,
    Unconfirmed,
    UnknownAgent,
)
from architect.router.hot_routes import HotRoutes
from architect.router.hub import RouterHub
from architect.router.intake import BodyLimits, BoundedSite, LimitedRequest
from architect.router.sessions import COOKIE_NAME, is_session, new_session, set_cookie_value
from architect.router.static_files import SafeFile
from architect.router.uploads import UploadBounds, UploadFolder
from architect.router.websocket import RouterSocketFactory, bearer_token, is_loopback

log = Logger()


# Each error of the router, as an HTTP status; a subclass takes its nearest ancestor's.
HTTP_STATUS: dict[type[RouterError], int] = {
    BadRequest: 400,
    Forbidden: 403,
    NotFound: 404,
    MethodNotAllowed: 405,
    Refused: 409,
    TooLarge: 413,
    InsufficientStorage: 507,
    NoBackend: 503,
    BackendTimeout: 504,
}


def http_status(error: RouterError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


# What the router calls itself in its answers: no software version for a scanner to match.
SERVER_NAME = b"Architect"
_SERVER_HEADER = (b"server", "server", b"Server", "Server")


class RouterRequest(LimitedRequest):
    """A request of the router's Site (its body bounded: intake.py)."""

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        if name in _SERVER_HEADER:  # Twisted names itself and its version here
            value = SERVER_NAME
        super().setHeader(name, value)


class _ErrorPage(Resource):
    """A RouterError, answered as all of them are, whatever the method."""

    isLeaf = True

    def __init__(self, error: RouterError) -> None:
        super().__init__()
        self.error = error

    def render(self, request: IRequest) -> bytes:
        return _error_body(request, http_status(self.error), str(self.error))


class TaskFiles(SafeFile):
    """The task's frontend files: a folder without an index.html is not listed, and what
    cannot be served is answered as JSON, like every error of the router."""

    # (Twisted types these as its own HTML pages.)
    childNotFound: Any = _ErrorPage(NotFound("no such file"))
    forbidden: Any = _ErrorPage(Forbidden("this file may not be read"))

    def directoryListing(self) -> Resource:
        return self.childNotFound

    def render(self, request: IRequest) -> bytes | int:
        # (Twisted answers any other method with an HTML page: a 405, or a 501 for one
        # it has never heard of, such as DELETE.)
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            error = MethodNotAllowed("the task's frontend files are only read: GET or HEAD")
            return _error_body(request, http_status(error), str(error))
        result: bytes | int = super().render(request)
        return result


class _WithoutQueries:
    """A request as the access log sees it: paths without their query strings, which can
    hold the backend's token (`?token=`) or a worker's id (a page's Referer)."""

    def __init__(self, request: Any) -> None:
        self._request = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    @property
    def uri(self) -> bytes:
        return bytes(self._request.uri).split(b"?", 1)[0]

    def getHeader(self, name: bytes) -> bytes | None:
        value: bytes | None = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return value.split(b"?", 1)[0]
        return value


@provider(IAccessLogFormatter)
def access_log_line(timestamp: str, request: Any) -> str:
    """Twisted's combined log line, with no query string in it."""
    line: str = combinedLogFormatter(timestamp, _WithoutQueries(request))
    return line


class _QuietSite(BoundedSite):
    """A Site that writes no access log line per request."""

    def log(self, request: http.Request) -> None:
        pass


def _error_body(request: IRequest, code: int, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return _sized(request, compact_json({"error": message}))


def _json(request: IRequest, value: Any) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return _sized(request, compact_json(value))


def _sized(request: IRequest, body: bytes) -> bytes:
    """`body`, its length said: without it Twisted sends the answer in chunks."""
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _session(request: IRequest) -> str | None:
    """The browser session the request's cookie carries (router/sessions.py), or None."""
    raw = request.getCookie(COOKIE_NAME.encode("ascii"))
    value = raw.decode("latin-1") if raw is not None else None
    return value if is_session(value) else None


def _over_tls(request: IRequest) -> bool:
    """Whether the browser reached us over https: here, or through a TLS proxy that says so.
    (A forged header only gets its sender a cookie its browser will not send back.)"""
    forwarded = (request.getHeader(b"x-forwarded-proto") or b"").strip().lower()
    return bool(request.isSecure()) or forwarded == b"https"


def _agent_id(body: dict[str, Any]) -> str:
    agent_id = body.get("USED_AGENT_ID")
    if not isinstance(agent_id, str) or not agent_id:
        raise BadRequest("USED_AGENT_ID must be a non-empty string")
    if NUL in agent_id:
        raise BadRequest("USED_AGENT_ID must not hold NUL characters")
    if len(agent_id) > MAX_ID_LENGTH:
        raise BadRequest(f"USED_AGENT_ID is longer than {MAX_ID_LENGTH} characters")
    return agent_id


class RouterWeb:
    """The router's HTTP face. `resource()` is the root of the Site."""

    app = Klein()

    def __init__(self, hub: RouterHub, config: RouterConfig) -> None:
        self.hub = hub
        self.config = config
        self.socket_factory = RouterSocketFactory(hub, config.max_message_bytes)
        self.socket_resource = WebSocketResource(self.socket_factory)
        self.uploads = UploadFolder(
            config.upload_dir,
            UploadBounds(
                per_agent=config.max_upload_bytes_per_agent,
                folder=config.max_upload_dir_bytes,
                free_disk=config.min_free_disk_bytes,
            ),
        )

    def resource(self) -> Resource:
        return self.app.resource()

    def site(self, hot_routes: bool = True) -> BoundedSite:
        """The router's Site; `hot_routes=False` routes every request through Klein (the
        equivalence tests compare the two)."""
        limits = BodyLimits(json=self.config.max_json_bytes, multipart=self.config.max_body_bytes)
        site_class = BoundedSite if self.config.access_log else _QuietSite
        site = site_class(
            self.resource(),
            limits,
            _ErrorPage,
            logFormatter=access_log_line,
            reactor=self.hub.clock,  # its timers (idle, header deadline) on the hub's clock
        )
        site.requestFactory = RouterRequest
        site.header_timeout = self.config.header_timeout
        site.displayTracebacks = False
        if hot_routes:
            site.shortcut = self.hot_routes().resource_for
        return site

    def hot_routes(self) -> HotRoutes:
        route: Callable[[IRequest], Deferred[bytes]] = self.request_agent
        return HotRoutes(
            {
                b"/request_agent": route,
                b"/register_worker": route,
                b"/submit_task": self.submit_task,
                b"/submit_metadata": self.submit_metadata,
            },
            self.router_error,
            self.unexpected_error,
        )

    # --- errors ---

    @app.handle_errors(RouterError)
    def router_error(self, request: IRequest, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, RouterError)
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            request.setHeader(b"Retry-After", str(retry_after).encode("ascii"))
        return _error_body(request, http_status(error), str(error))

    @app.handle_errors(Exception)
    def unexpected_error(self, request: IRequest, failure: Failure) -> bytes:
        log.failure("unexpected error serving {path}", failure, path=request.path)
        return _error_body(request, 500, "internal error; the router keeps running")

    # --- bodies (none over its limit reaches a route: intake.py) ---

    def _json_body(self, request: IRequest) -> dict[str, Any]:
        raw = request.content.read() if request.content is not None else b""
        try:
            body = decode_json(raw)  # strict: no NaN, no lone surrogate, not too deep
        except ProtocolError:
            raise BadRequest("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def _is_multipart(self, request: IRequest) -> bool:
        content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
        return content_type.lower().startswith("multipart/form-data")

    def _multipart_body(
        self, request: IRequest, data_field: str
    ) -> tuple[dict[str, Any], str, list[str]]:
        """USED_AGENT_ID, the JSON text in `data_field` and files -> (data, agent id, the
        names of the files stored).

        Everything is checked before a file is stored: the body, the agent, the bounds.
        """
        content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
        assert request.content is not None
        fields, sizes = self.uploads.read_fields(request.content, content_type)
        agent_id = _agent_id(fields)
        text = fields.get(data_field, "{}")
        try:
            data = decode_json(text)
        except ProtocolError:
            raise BadRequest(f"{data_field} must be JSON text") from None
        if not isinstance(data, dict):
            raise BadRequest(f"{data_field} must hold a JSON object")
        if not sizes:
            return data, agent_id, []
        self.hub.check_agent(agent_id, _session(request))
        self.uploads.check_room(agent_id, sizes)
        data["files"] = self.uploads.store_files(request.content, content_type, agent_id)
        return data, agent_id, [entry["filename"] for entry in data["files"]]

    def _give_session(self, request: IRequest) -> str | None:
        """The browser's session; one is made and handed over (Set-Cookie) if it has none.

        Given with everything a page loads before it registers (its files, /architect.js,
        /task_config.json), not only with the registration answer: two tabs of a first
        visit that both registered without a cookie would get two sessions, and the
        browser would keep only the last, losing the other tab's agent.
        """
        session = _session(request)
        if session is None and self.config.bind_agents_to_browser:
            session = new_session()
            value = set_cookie_value(session, secure=_over_tls(request))
            request.setHeader(b"set-cookie", value.encode("ascii"))
        return session

    # --- endpoints ---

    @app.route("/task_config.json", methods=["GET"])
    def task_config(self, request: IRequest) -> bytes:
        versions = request.args.get(b"mephisto_task_version") or [None]
        version = versions[0].decode("utf-8", "replace") if versions[0] is not None else None
        self._give_session(request)
        return _json(request, self.hub.task_config_for(self.config.task_config, version))

    @app.route("/request_agent", methods=["POST"])
    @app.route("/register_worker", methods=["POST"])
    def request_agent(self, request: IRequest) -> Deferred[bytes]:
        body = self._json_body(request)
        provider_data = body.get("provider_data")
        if not isinstance(provider_data, dict):
            raise BadRequest("provider_data must be a JSON object")
        if holds_nul(provider_data):  # the worker's names and ids: see architect/nul.py
            raise BadRequest("provider_data must not hold NUL characters")
        d = self.hub.request_agent(
            provider_data, as_timestamp(body.get("client_timestamp")), self._give_session(request)
        )
        return self._answer_when_ready(request, d)

    @app.route("/submit_onboarding", methods=["POST"])
    def submit_onboarding(self, request: IRequest) -> Deferred[bytes]:
        return self._once_agents_told(request, lambda: self._submit_onboarding_now(request))

    def _submit_onboarding_now(self, request: IRequest) -> Deferred[bytes]:
        body = self._json_body(request)
        provider_data = body.get("provider_data")
        if not isinstance(provider_data, dict):
            raise BadRequest("provider_data must be a JSON object")
        agent_id = _agent_id(provider_data)
        d = self.hub.submit_onboarding(
            agent_id, provider_data, as_timestamp(body.get("client_timestamp")), _session(request)
        )
        return self._answer_when_ready(request, d)

    def _answer_when_ready(self, request: IRequest, d: Deferred[dict[str, Any]]) -> Deferred[bytes]:
        # A browser that gives up cancels its pending request.
        cast(Request, request).notifyFinish().addErrback(lambda _: d.cancel())
        return d.addCallback(lambda packet: _json(request, packet))

    def _submission(
        self, request: IRequest, json_field: str, multipart_field: str
    ) -> tuple[str, dict[str, Any], float | None, list[str]]:
        """(agent id, data, client timestamp, the files stored) of a JSON or multipart
        submission."""
        if self._is_multipart(request):
            data, agent_id, stored = self._multipart_body(request, multipart_field)
            return agent_id, data, None, stored
        body = self._json_body(request)
        agent_id = _agent_id(body)
        submitted = body.get(json_field)
        if not isinstance(submitted, dict):
            raise BadRequest(f"{json_field} must be a JSON object")
        return agent_id, submitted, as_timestamp(body.get("client_timestamp")), []

    def _once_agents_told(
        self, request: IRequest, attempt: Callable[[], Deferred[bytes]], wait: bool = True
    ) -> Deferred[bytes]:
        """`attempt`, and if it finds the agent unknown to a router that restarted and has
        not yet heard from its backend which agents exist, `attempt` again once it has:
        a page that submits then gets its answer, not a 404. With several routers
        (architect/cluster/), one that started after the agent's news asks Redis first.
        Without `wait`, only Redis is asked."""

        def unknown(failure: Failure) -> Deferred[bytes]:
            failure.trap(UnknownAgent)
            found = cast(UnknownAgent, failure.value)
            return Deferred.fromCoroutine(self._told_then_again(request, attempt, found, wait))

        # The common case (the agent is known) resumes no coroutine on its way back.
        return maybeDeferred(attempt).addErrback(unknown)

    async def _told_then_again(
        self,
        request: IRequest,
        attempt: Callable[[], Deferred[bytes]],
        unknown: UnknownAgent,
        wait: bool,
    ) -> bytes:
        cluster = self.hub.cluster
        if cluster is None or not await cluster.learn(unknown.agent_id):
            told = self.hub.agents_told_yet() if wait else None
            if told is None:
                raise unknown
            await told
        if request.content is not None:
            request.content.seek(0)  # the body is read anew
        return await maybeDeferred(attempt)

    def _submit(
        self, request: IRequest, packet_type: str, fields: tuple[str, str], answer: str
    ) -> Deferred[bytes]:
        return self._once_agents_told(
            request, lambda: self._submit_now(request, packet_type, fields, answer)
        )

    def _submit_now(
        self, request: IRequest, packet_type: str, fields: tuple[str, str], answer: str
    ) -> Deferred[bytes]:
        """Hand a submission to the hub; the files this request stored go if it fails."""
        agent_id, data, client_timestamp, stored = self._submission(request, *fields)
        d = maybeDeferred(
            self.hub.submit,
            packet_type,
            agent_id,
            data,
            client_timestamp,
            _session(request),
            tuple(self.uploads.folder / name for name in stored),
        )

        def failed(failure: Failure) -> Failure:
            if not failure.check(Unconfirmed):  # else the journal still names them
                self.uploads.remove(stored)
            return failure

        return d.addCallbacks(lambda _: _json(request, {"status": answer}), failed)

    @app.route("/submit_task", methods=["POST"])
    def submit_task(self, request: IRequest) -> Deferred[bytes]:
        # Answered once the submission is safe: stored (embedded) or held by the router.
        return self._submit(request, SUBMIT_UNIT, ("final_data", "final_string_data"), "Submitted!")

    @app.route("/submit_metadata", methods=["POST"])
    def submit_metadata(self, request: IRequest) -> Deferred[bytes]:
        return self._submit(
            request, SUBMIT_METADATA, ("metadata", "metadata"), "Submitted metadata"
        )

    @app.route("/log_error", methods=["POST"])
    def log_error(self, request: IRequest) -> Deferred[bytes]:
        # One of several routers may have yet to learn of its agent (a restarted router
        # alone answers 404 at once: an error report is not worth an open request).
        def attempt() -> Deferred[bytes]:
            return maybeDeferred(self._log_error_now, request)

        return self._once_agents_told(request, attempt, wait=False)

    def _log_error_now(self, request: IRequest) -> bytes:
        body = self._json_body(request)
        agent_id = _agent_id(body)
        self.hub.log_error(
            agent_id,
            body.get("error_data"),
            as_timestamp(body.get("client_timestamp")),
            _session(request),
        )
        return _json(request, {"status": "Error log sent!"})

    @app.route("/is_alive", methods=["GET"])
    def is_alive(self, request: IRequest) -> bytes:
        return _json(request, {"status": "Alive!"})

    @app.route("/get_timestamp", methods=["GET"])
    def get_timestamp(self, request: IRequest) -> bytes:
        return _json(request, {"timestamp": int(time.time() * 1000)})

    def _backends_upload(self, request: IRequest, name: str) -> tuple[Path, str | None]:
        """The upload a backend asks for (`?agent=`: only one of that agent's), and the
        agent; 403 for anyone but the backend, 404 for no such upload."""
        tokens = request.args.get(b"token") or []
        token = (
            tokens[0].decode("utf-8", "replace")
            if tokens
            else bearer_token((request.getHeader(b"authorization") or b"").decode("latin-1"))
        )
        peer = getattr(request.getClientAddress(), "host", "")
        if not self.hub.backend_may_connect(token, is_loopback(peer)):
            raise Forbidden("only the backend may download uploaded files")
        agents = request.args.get(b"agent") or [None]
        agent_id = agents[0].decode("utf-8", "replace") if agents[0] is not None else None
        path = self.uploads.path_of(name, agent_id)
        if path is None:
            raise NotFound(f"no uploaded file named {name!r}")
        return path, agent_id

    # <path:>: a name with a slash in it (..%2F) is refused here, as any other wrong name.
    @app.route("/download_file/<path:name>", methods=["DELETE"])
    def discard_file(self, request: IRequest, name: str) -> bytes:
        """The backend kept the file: the router's copy goes (only with the agent named)."""
        _, agent_id = self._backends_upload(request, name)
        if agent_id is None:
            raise BadRequest("say whose upload it is (?agent=)")
        self.uploads.discard(name, agent_id)
        return _json(request, {"status": "Discarded"})

    @app.route("/download_file/<path:name>", methods=["GET"])
    def download_file(self, request: IRequest, name: str) -> Resource:
        path, _ = self._backends_upload(request, name)
        # Bytes to save, never a page to show, whatever the worker named the file.
        resource = SafeFile(str(path), defaultType="application/octet-stream")
        resource.type, resource.encoding = "application/octet-stream", None
        resource.isLeaf = True
        request.setHeader(b"content-disposition", b"attachment")
        request.setHeader(b"x-content-type-options", b"nosniff")
        return resource

    @app.route("/architect.js", methods=["GET"])
    def architect_js(self, request: IRequest) -> bytes:
        """Our browser client; served before (and instead of) any file of the task's static_dir."""
        request.setHeader(b"content-type", b"application/javascript; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        self._give_session(request)
        return resources.files("architect").joinpath("static", "architect.js").read_bytes()

    @app.route("/", branch=True)
    def root(self, request: IRequest) -> IResource | bytes:
        upgrade = (request.getHeader(b"upgrade") or b"").lower()
        if upgrade == b"websocket" and request.path in (b"/", b""):
            return self.socket_resource
        if self.config.static_dir is None:
            return _error_body(request, 404, "this router serves no task frontend (static_dir)")
        self._give_session(request)
        return TaskFiles(str(self.config.static_dir))
