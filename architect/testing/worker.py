"""A simulated worker: one browser page, speaking the real protocol over real HTTP and a
real WebSocket, and showing what the page would see.

It does what a page on `/architect.js` does (docs/architect-js.md): it loads
`/task_config.json` (which hands it its session cookie), registers with
`/request_agent`, answers onboarding, opens the live socket (`alive`, then heartbeats),
sends and receives live updates, calls remote procedures, uploads files and submits.
Its delivery rules are architect.js's: updates sent while offline wait for the next
socket; updates written to a socket are kept until a later heartbeat is answered and
written again on the next socket if it died first; client-bound updates whose
`update_id` was seen are dropped; after a reconnection it asks `/request_agent` again
and takes the `past_live_updates` it missed.

Every wait is bounded (`timeout`, 10 s unless told) and fails with a `WaitTimeout` that
says what was awaited and what the page saw.

    worker = await daemon.worker("alice")
    await worker.register()
    await worker.connect()
    await worker.send({"text": "hello"})
    reply = await worker.next_update()
    await worker.submit({"rating": 5})
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from architect.lifecycle import ACTIVE
from architect.protocol import (
    ALIVE,
    CLIENT_BOUND_LIVE_UPDATE,
    HEARTBEAT,
    MEPHISTO_BOUND_LIVE_UPDATE,
    MEPHISTO_TASK_VERSION,
    UPDATE_STATUS,
    CloseCode,
)
from architect.tasks.bot import Page, RemoteError, TaskEnded
from architect.testing.live import PageSocket, open_page_socket
from architect.testing.waits import NOT_YET, Conditions, NotYet, WaitTimeout, with_timeout

DEFAULT_TIMEOUT = 10.0  # seconds any one wait lasts at most
# Seconds a request waits for its answer: longer than the router's own request_timeout
# (30 s), which answers a registration the backend is slow with 504.
HTTP_TIMEOUT = 60.0
HEARTBEAT_INTERVAL = 6.0  # as browsers: architect.js and mephisto-task
FIRST_HEARTBEAT_DELAY = 0.5
MISSED_HEARTBEATS = 5  # unanswered heartbeats before the socket is taken for dead
RECONNECT_MIN_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0


class HttpError(Exception):
    """The router answered a request with another code than 200."""

    def __init__(self, worker: str, method: str, path: str, code: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"{worker}: {method} {path} answered {code}: {error}")
        self.method = method
        self.path = path
        self.code = code
        self.body = body


class NoAgent(Exception):
    """An action that needs an agent, on a page that has none (refused, or not registered)."""


class WorkerClosed(Exception):
    """The worker was closed while something was awaited."""


@attrs.define
class Sent:
    """A live update this page sent."""

    data: dict[str, Any]
    while_active: bool  # sent while the agent was working: the task must get it
    abandoned: bool = False  # still unconfirmed when the page reloaded: it may be lost


@attrs.define
class AgentView:
    """One agent, as its page sees it; a worker has one per agent it was given."""

    agent_id: str
    init_data: Any = None
    past_live_updates: list[Any] = attrs.field(factory=list)
    status: str | None = None
    statuses: list[str] = attrs.field(factory=list)
    updates: list[dict[str, Any]] = attrs.field(factory=list)  # client-bound, once each
    taken: int = 0  # how many of `updates` next_update has handed out
    received_ids: set[str] = attrs.field(factory=set)
    sent: dict[str, Sent] = attrs.field(factory=dict)
    answers: dict[str, int] = attrs.field(factory=dict)  # remote call -> answers received
    acknowledged: bool = False  # its submission was answered 200
    submitted: Any = None
    ended_at: float | None = None  # wall clock when the page first saw a final status

    @property
    def ended(self) -> bool:
        return self.status is not None and self.status not in ACTIVE

    @property
    def is_onboarding(self) -> bool:
        return self.agent_id.startswith("onboarding")


@attrs.define
class Disruption:
    """A disconnect or a reload to inject before the worker's `at_step`-th action."""

    kind: str  # "drop": the socket is cut for `offline` seconds; "reload": the page reloads
    at_step: int
    offline: float = 1.0
    done: bool = False


@attrs.define
class _Connection:
    """One socket's bookkeeping."""

    agent_id: str
    socket: PageSocket | None = None
    alive_sent: bool = False
    heartbeats_sent: int = 0
    heartbeats_answered: int = 0
    seen: set[str] = attrs.field(factory=set)  # update ids received on this socket
    closed: bool = False
    close_code: int | None = None


@attrs.define
class _Queued:
    packet_type: str
    data: dict[str, Any]
    written: Deferred[dict[str, Any]]


class _Link:
    """Hands one connection's socket events to the worker, with that connection."""

    def __init__(self, worker: SimulatedWorker, connection: _Connection) -> None:
        self.worker = worker
        self.connection = connection

    def socket_opened(self, socket: PageSocket) -> None:
        self.worker._opened(self.connection, socket)

    def packet_received(self, socket: PageSocket, packet: dict[str, Any]) -> None:
        self.worker._received(self.connection, packet)

    def socket_closed(self, socket: PageSocket, code: int | None, reason: str | None) -> None:
        self.worker._closed(self.connection, code)


class SimulatedWorker:
    """One worker's page. `url` is the router's (http://127.0.0.1:3000); `name` the
    worker's name, as the mock provider's `worker_id`."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        reactor: Any = None,
        pool: HTTPConnectionPool | None = None,
        assignment_id: str = "1",
        timeout: float = DEFAULT_TIMEOUT,
        http_timeout: float = HTTP_TIMEOUT,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        pace: Callable[[], float] | None = None,
        disruption: Disruption | None = None,
        seed: int | str | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.url = url.rstrip("/")
        self.name = name
        self.assignment_id = str(assignment_id)
        self.timeout = timeout
        self.http_timeout = max(timeout, http_timeout)
        self.heartbeat_interval = heartbeat_interval
        self.pace = pace  # seconds to wait before each action (a person reading)
        self.disruption = disruption
        self.random = random.Random(seed if seed is not None else name)  # for the bot's choices
        self.tab = uuid.uuid4().hex[:12]  # architect.js's tab id: kept across reloads
        self.cookies = IndexableCookieJar()  # the browser's: the session cookie lives here
        self.http = HTTPClient(Agent(reactor, pool=pool), cookiejar=self.cookies)
        self.conditions = Conditions(reactor)

        self.task_config: dict[str, Any] | None = None
        self.worker_id: str | None = None
        self.failure_reason: str | None = None
        self.agent: AgentView | None = None
        self.agents: list[AgentView] = []  # every agent this page was given, in order
        self.refusals: list[str] = []
        # What a load run reads: (what, seconds) of registrations, asks, calls, submissions.
        self.timings: list[tuple[str, float]] = []
        self.repeats = 0  # updates seen before (replayed after a reconnection): dropped
        self.duplicates: list[str] = []  # an update twice on one socket, a call answered twice
        self.reloads = 0
        self.reconnections = 0
        self.steps = 0
        self.closed = False
        self.doing = "nothing yet"  # what it is doing or waiting for, for error messages

        self._agents: dict[str, AgentView] = {}
        self._live_wanted = False
        self._paused = False  # disconnect(): offline until reconnect()
        self._ever_connected = False
        self._connection: _Connection | None = None
        self._queue: list[_Queued] = []
        self._in_flight: list[tuple[dict[str, Any], int]] = []
        self._calls: dict[str, Deferred[dict[str, Any]]] = {}
        self._heartbeat_timer: IDelayedCall | None = None
        self._reconnect_timer: IDelayedCall | None = None
        self._reconnect_attempts = 0
        self._last_close_code: int | None = None
        self._background: set[Deferred[None]] = set()  # resynchronisations under way

    def __repr__(self) -> str:
        agent = f" (agent {self.agent.agent_id})" if self.agent else ""
        return f"worker {self.name}{agent}"

    # --- what the page sees ---

    @property
    def agent_id(self) -> str | None:
        return self.agent.agent_id if self.agent else None

    @property
    def status(self) -> str | None:
        """The agent's status as the page last heard it (None before any: a page without
        a socket hears none)."""
        return self.agent.status if self.agent else None

    @property
    def statuses(self) -> list[str]:
        return self.agent.statuses if self.agent else []

    @property
    def init_data(self) -> Any:
        """The agent's `init_task_data` (with `past_live_updates` after a reload)."""
        return self.agent.init_data if self.agent else None

    @property
    def updates(self) -> list[dict[str, Any]]:
        """Every client-bound live update the page got for its agent, once each, in order
        (answers to remote calls apart)."""
        return self.agent.updates if self.agent else []

    @property
    def past_live_updates(self) -> list[Any]:
        """What the last registration answer replayed (both directions), as it came."""
        return self.agent.past_live_updates if self.agent else []

    @property
    def is_refused(self) -> bool:
        return self.agent is None and self.failure_reason is not None

    @property
    def is_onboarding(self) -> bool:
        return self.agent is not None and self.agent.is_onboarding

    @property
    def connected(self) -> bool:
        return self._is_open()

    # --- HTTP ---

    def provider_data(self) -> dict[str, Any]:
        """What the mock provider registers, as architect.js makes it."""
        return {
            "worker_name": self.name,
            "agent_registration_id": f"{self.assignment_id}-{self.name}-{self.tab}",
            "assignment_id": self.assignment_id,
            "provider_type": "mock",
        }

    async def _exchange(
        self, method: str, path: str, body: Any = None, files: Any = None, fields: Any = None
    ) -> tuple[int, Any]:
        if files is not None:
            response = await self.http.request(method, self.url + path, data=fields, files=files)
        elif body is not None:
            response = await self.http.request(method, self.url + path, json=body)
        else:
            response = await self.http.request(method, self.url + path)
        text = await response.text("utf-8")
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            answer = text
        return response.code, answer

    async def _request(
        self, method: str, path: str, body: Any = None, files: Any = None, fields: Any = None
    ) -> Any:
        """The answer's JSON; HttpError unless the router answered 200."""
        what = f"{self}: {method} {path.split('?')[0]} had no answer within {self.http_timeout} s"
        code, answer = await with_timeout(
            Deferred.fromCoroutine(self._exchange(method, path, body, files, fields)),
            self.reactor,
            self.http_timeout,
            what,
        )
        if code != 200:
            raise HttpError(str(self), method, path.split("?")[0], code, answer)
        return answer

    async def _agent_details(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self._request("POST", path, body)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict):
            raise HttpError(str(self), "POST", path, 200, answer)
        return data

    async def open(self) -> dict[str, Any]:
        """Load the page: fetch /task_config.json (the router hands the session cookie)."""
        self.doing = "loading the page"
        config = await self._request(
            "GET", f"/task_config.json?mephisto_task_version={MEPHISTO_TASK_VERSION}"
        )
        self.task_config = config if isinstance(config, dict) else {}
        return self.task_config

    async def register(self, assignment_id: str | int | None = None) -> dict[str, Any]:
        """Ask for an agent (`/request_agent`); a refusal is an answer too: see
        `is_refused` and `failure_reason`. A new `assignment_id` asks for another unit."""
        if assignment_id is not None:
            self.assignment_id = str(assignment_id)
        if self.task_config is None:
            await self.open()
        await self._pause()
        self.doing = "registering"
        started = time.monotonic()
        details = await self._agent_details(
            "/request_agent",
            {"provider_data": self.provider_data(), "client_timestamp": time.time()},
        )
        self.timings.append(("register", time.monotonic() - started))
        self._take_details(details)
        return details

    def _take_details(self, data: dict[str, Any]) -> None:
        previous = self.agent
        agent_id = data.get("agent_id") or None
        self.worker_id = data.get("worker_id", self.worker_id)
        self.failure_reason = data.get("failure_reason")
        if agent_id is None:
            self.agent = None
            self.refusals.append(str(self.failure_reason))
        else:
            view = self._agents.get(agent_id)
            if view is None:
                view = self._agents[agent_id] = AgentView(agent_id)
                self.agents.append(view)
            view.init_data = init = data.get("init_task_data")
            past = init.get("past_live_updates") if isinstance(init, dict) else None
            view.past_live_updates = list(past) if isinstance(past, list) else []
            self.agent = view
            for update in view.past_live_updates:
                if isinstance(update, dict):
                    self._deliver(view, update, None)
        if self.agent is not previous:
            # A socket speaks for one agent: onboarding -> unit, or a new unit, needs a new one.
            self._queue.clear()
            self._in_flight.clear()
            if self._connection is not None:
                self._end_connection()
            if self._live_wanted and self.agent is not None:
                self._open_socket()
        self.conditions.changed()

    def _require_agent(self, action: str) -> AgentView:
        if self.closed:
            raise WorkerClosed(f"{self} is closed: it cannot {action}")
        if self.agent is None:
            why = f"was refused: {self.failure_reason}" if self.failure_reason else "has no agent"
            raise NoAgent(f"{self} cannot {action}: it {why} (register first)")
        return self.agent

    async def submit_onboarding(self, data: dict[str, Any]) -> dict[str, Any]:
        """Send the onboarding answers; the page then holds the unit agent it was given, or
        a refusal (`is_refused`)."""
        view = self._require_agent("submit onboarding")
        await self._pause()
        self.doing = "submitting the onboarding"
        details = await self._agent_details(
            "/submit_onboarding",
            {
                "provider_data": {"USED_AGENT_ID": view.agent_id, "onboarding_data": data},
                "client_timestamp": time.time(),
            },
        )
        view.acknowledged = True
        view.submitted = data
        self._take_details(details)
        return details

    async def submit(
        self, data: dict[str, Any], files: Mapping[str, tuple[str, bytes, str]] | None = None
    ) -> Any:
        """Submit the unit (`/submit_task`), as JSON, or multipart with `files` (field ->
        (file name, content, mimetype)). Live updates written before are first known to
        have reached the router. HttpError unless answered 200."""
        view = self._require_agent("submit")
        if view.is_onboarding:
            raise NoAgent(f"{self} is onboarding: submit its answers with submit_onboarding")
        await self._step(last=True)
        await self._confirm_sent()
        self.doing = "submitting"
        started = time.monotonic()
        if files:
            parts = {field: (name, kind, content) for field, (name, content, kind) in files.items()}
            fields = {"USED_AGENT_ID": view.agent_id, "final_string_data": json.dumps(data)}
            answer = await self._request("POST", "/submit_task", files=parts, fields=fields)
        else:
            body: dict[str, Any] = {"USED_AGENT_ID": view.agent_id, "final_data": data}
            body["client_timestamp"] = time.time()
            answer = await self._request("POST", "/submit_task", body)
        self.timings.append(("submit", time.monotonic() - started))
        view.acknowledged = True
        view.submitted = data
        return answer

    async def submit_metadata(self, data: dict[str, Any]) -> Any:
        view = self._require_agent("submit metadata")
        return await self._request(
            "POST",
            "/submit_metadata",
            {"USED_AGENT_ID": view.agent_id, "metadata": data, "client_timestamp": time.time()},
        )

    async def log_error(self, data: dict[str, Any]) -> Any:
        view = self._require_agent("log an error")
        return await self._request(
            "POST",
            "/log_error",
            {"USED_AGENT_ID": view.agent_id, "error_data": data, "client_timestamp": time.time()},
        )

    async def reload(self) -> dict[str, Any]:
        """Reload the page: the socket closes, the page registers again with the same
        registration id (the same agent comes back, with `past_live_updates`), and opens
        its socket again if it had one."""
        await self._pause()
        self.doing = "reloading"
        was_live = self._live_wanted
        try:
            await self._confirm_sent(min(self.timeout, 2.0))
        except (WaitTimeout, TaskEnded):
            pass
        if self.agent is not None:
            for packet, _ in self._in_flight:
                sent = self.agent.sent.get(packet["data"].get("update_id"))
                if sent is not None:
                    sent.abandoned = True  # the page forgets what it was sending
        self._queue.clear()
        self._in_flight.clear()
        self._live_wanted = False
        await self._close_socket()
        self.reloads += 1
        await self.open()
        details = await self._agent_details(
            "/request_agent",
            {"provider_data": self.provider_data(), "client_timestamp": time.time()},
        )
        self._take_details(details)
        if was_live and self.agent is not None and not self.agent.ended:
            await self.connect()
        return details

    # --- live ---

    async def connect(self) -> None:
        """Open the live socket (`alive`, then heartbeats); it reconnects by itself when it
        drops, until `close()`."""
        self._require_agent("connect")
        self._live_wanted = True
        self._paused = False
        if self._connection is None:
            self._open_socket()
        self.doing = "opening the live socket"
        await self.conditions.wait(
            lambda: True if self._is_open() else NOT_YET,
            self.timeout,
            lambda: (
                f"{self}: the live socket did not open within {self.timeout} s"
                + self._socket_note()
            ),
        )

    async def send(self, data: dict[str, Any], pause: bool = True) -> str:
        """Send a live update (with a fresh `update_id`, returned) to the task's code;
        fires once it is written to a socket (it waits while the socket is away).
        `pause=False`: no pause before it (the bot just took one: `pause()`)."""
        view = self._require_agent("send a live update")
        await self._step(pause)
        return await self._send(view, data)

    async def _send(self, view: AgentView, data: dict[str, Any]) -> str:
        update = {**data, "update_id": str(uuid.uuid4())}
        view.sent[update["update_id"]] = Sent(update, while_active=not view.ended)
        written: Deferred[dict[str, Any]] = Deferred()
        self._queue.append(_Queued(MEPHISTO_BOUND_LIVE_UPDATE, update, written))
        if not self._live_wanted:
            self._live_wanted = True
            if self._connection is None:
                self._open_socket()
        self._flush()
        self.doing = "sending a live update"
        await with_timeout(
            written,
            self.reactor,
            self.timeout,
            f"{self}: a live update could not be written within {self.timeout} s"
            + self._socket_note(),
        )
        return str(update["update_id"])

    async def next_update(self, timeout: float | None = None) -> dict[str, Any]:
        """The next client-bound live update the page got (in order, each once); TaskEnded
        if the agent stops working first; WaitTimeout if none comes within `timeout`."""
        view = self._require_agent("wait for a live update")
        await self._step(pause=False)
        return await self._next_update(view, timeout)

    async def _next_update(self, view: AgentView, timeout: float | None) -> dict[str, Any]:
        wait = self.timeout if timeout is None else timeout

        def check() -> dict[str, Any] | NotYet:
            if view.taken < len(view.updates):
                view.taken += 1
                return view.updates[view.taken - 1]
            if view.ended or self.agent is not view:
                raise TaskEnded(str(self), view.status)
            if self.closed:
                raise WorkerClosed(f"{self} was closed")
            return NOT_YET

        def describe() -> str:
            last = view.updates[-1] if view.updates else None
            return (
                f"{self}: no live update came within {wait} s (status {view.status!r};"
                f" {len(view.updates)} so far, the last: {last!r})" + self._socket_note()
            )

        self.doing = "waiting for a live update"
        update: dict[str, Any] = await self.conditions.wait(check, wait, describe)
        return update

    async def ask(self, data: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a live update and wait for the next one the page gets (the answer); the
        time between them is kept as a live round trip."""
        view = self._require_agent("ask")
        await self._step()
        started = time.monotonic()  # after the pause: the daemon's time, not the bot's
        await self._send(view, data)
        update = await self._next_update(view, timeout)
        self.note_timing("live", time.monotonic() - started)
        return update

    def note_timing(self, what: str, seconds: float) -> None:
        """Keep a time the bot measured itself (a load run reports "live" ones with the
        round trips): e.g. a chat message's way to the partner."""
        self.timings.append((what, seconds))

    async def call(self, target: str, args: Any = None, timeout: float | None = None) -> Any:
        """Call the task's remote procedure `target` with `args`; its parsed response, or
        RemoteError with the task's message."""
        view = self._require_agent(f"call {target!r}")
        request_id = str(uuid.uuid4())
        answered: Deferred[dict[str, Any]] = Deferred()
        self._calls[request_id] = answered
        view.answers[request_id] = 0
        wait = self.timeout if timeout is None else timeout
        await self._step()
        started = time.monotonic()
        try:
            call = {"request_id": request_id, "target": target, "args": json.dumps(args)}
            await self._send(view, call)
            self.doing = f"waiting for the answer to {target!r}"
            answer = await with_timeout(
                answered,
                self.reactor,
                wait,
                f"{self}: no answer to the remote call {target!r} within {wait} s"
                f" (status {view.status!r})" + self._socket_note(),
            )
        finally:
            self._calls.pop(request_id, None)
        self.timings.append(("call", time.monotonic() - started))
        error = answer.get("error")
        if error is not None:
            message = error if isinstance(error, str) else json.dumps(error)
            raise RemoteError(message, target, error)
        response = answer.get("response")
        return json.loads(response) if isinstance(response, str) else response

    async def wait_for_status(self, *wanted: str, timeout: float | None = None) -> str:
        """Wait until the page hears one of the `wanted` statuses (it needs a live socket);
        TaskEnded if the agent reaches another final status first."""
        view = self._require_agent("wait for a status")
        wait = self.timeout if timeout is None else timeout

        def check() -> str | NotYet:
            if view.status in wanted:
                return view.status
            if view.ended:
                raise TaskEnded(str(self), view.status)
            return NOT_YET

        self.doing = f"waiting for the status {' or '.join(map(repr, wanted))}"
        status: str = await self.conditions.wait(
            check,
            wait,
            lambda: (
                f"{self}: the status did not become {' or '.join(map(repr, wanted))} within"
                f" {wait} s (statuses heard: {view.statuses})" + self._socket_note()
            ),
        )
        return status

    async def wait_until_ended(self, timeout: float | None = None) -> str | None:
        """Wait until the page hears a final status (`completed`...), if it has a socket."""
        view = self._require_agent("wait for the end")
        if not self._live_wanted:
            return view.status
        wait = self.timeout if timeout is None else timeout
        self.doing = "waiting for a final status"
        ended: str | None = await self.conditions.wait(
            lambda: view.status if view.ended else NOT_YET,
            wait,
            lambda: (
                f"{self}: no final status came within {wait} s (statuses heard:"
                f" {view.statuses})" + self._socket_note()
            ),
        )
        return ended

    async def disconnect(self) -> None:
        """Cut the live socket as a network loss would (no closing handshake); the page stays
        offline until `reconnect()`. What it sends meanwhile waits."""
        self._paused = True
        connection = self._connection
        if connection is None:
            return
        if connection.socket is not None:
            connection.socket.drop()
        else:
            self._end_connection()
        await self.conditions.wait(
            lambda: True if connection.closed or connection is not self._connection else NOT_YET,
            self.timeout,
            lambda: f"{self}: the socket did not close within {self.timeout} s",
        )

    async def reconnect(self) -> None:
        """Come back after `disconnect()`: a new socket, and what was missed."""
        self._paused = False
        await self.connect()

    async def drop_connection(self, offline: float = 1.0) -> None:
        """Lose the network for `offline` seconds, then come back."""
        await self.disconnect()
        await deferLater(self.reactor, offline)
        await self.reconnect()

    async def close(self) -> None:
        """Close the page: its socket closes cleanly, pending waits fail."""
        if self.closed:
            return
        self._live_wanted = False
        for resync in list(self._background):
            resync.cancel()
        await self._close_socket()
        self.closed = True
        for answered in list(self._calls.values()):
            if not answered.called:
                answered.errback(WorkerClosed(f"{self} was closed"))
        self.conditions.fail_all(WorkerClosed(f"{self} was closed"))

    # --- the socket, as architect.js runs it ---

    def _is_open(self) -> bool:
        connection = self._connection
        return connection is not None and connection.socket is not None and connection.alive_sent

    def _socket_note(self) -> str:
        if self._live_wanted and not self._is_open():
            code = self._last_close_code
            return f"; the live socket is not open (last closed with {code})"
        if not self._live_wanted and self.agent is not None and not self.agent.ended:
            return "; the page has no live socket (connect() opens it)"
        return ""

    def _packet(self, packet_type: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "packet_type": packet_type,
            "subject_id": self.agent_id,
            "data": data,
            "client_timestamp": time.time(),
        }

    def _open_socket(self) -> None:
        if self._reconnect_timer is not None and self._reconnect_timer.active():
            self._reconnect_timer.cancel()
        self._reconnect_timer = None
        if not self._live_wanted or self._paused or self.agent is None or self.closed:
            return
        connection = _Connection(self.agent.agent_id)
        self._connection = connection
        connecting = open_page_socket(
            self.reactor, _Link(self, connection), self.url, self._cookie_header(), self.timeout
        )

        def failed(failure: Any) -> None:
            connection.closed = True
            if connection is self._connection:
                self._connection = None
                self._schedule_reconnect()
            self.conditions.changed()

        connecting.addErrback(failed)

    def _cookie_header(self) -> dict[str, str]:
        pairs = [f"{cookie.name}={cookie.value}" for cookie in self.cookies]
        return {"Cookie": "; ".join(pairs)} if pairs else {}

    def _opened(self, connection: _Connection, socket: PageSocket) -> None:
        if connection is not self._connection:
            socket.sendClose()
            return
        connection.socket = socket
        self._reconnect_attempts = 0
        # `alive` first, then what was sent but not known received, then the queue.
        if not socket.write(self._packet(ALIVE, {})):
            return
        connection.alive_sent = True
        resend, self._in_flight = self._in_flight, []
        for packet, _ in resend:
            if not socket.write(packet):
                return
            self._in_flight.append((packet, 0))
        self._flush()
        self._heartbeat_timer = self.reactor.callLater(FIRST_HEARTBEAT_DELAY, self._heartbeat)
        if self._ever_connected:
            self.reconnections += 1
            resync = Deferred.fromCoroutine(self._resync())
            self._background.add(resync)
            resync.addErrback(lambda failure: None)
            resync.addBoth(lambda _: self._background.discard(resync))
        self._ever_connected = True
        self.conditions.changed()

    def _flush(self) -> None:
        connection = self._connection
        while self._queue and self._is_open() and connection is not None and connection.socket:
            item = self._queue.pop(0)
            packet = self._packet(item.packet_type, item.data)
            if not connection.socket.write(packet):
                self._queue.insert(0, item)
                return
            self._in_flight.append((packet, connection.heartbeats_sent))
            if not item.written.called:
                item.written.callback(packet)

    def _heartbeat(self) -> None:
        self._heartbeat_timer = None
        connection = self._connection
        if connection is None or connection.socket is None or not self._is_open():
            return
        if connection.heartbeats_sent - connection.heartbeats_answered >= MISSED_HEARTBEATS:
            connection.socket.drop()  # it looks open, but nothing comes back
            return
        self._write_heartbeat(connection)
        self._heartbeat_timer = self.reactor.callLater(self.heartbeat_interval, self._heartbeat)

    def _write_heartbeat(self, connection: _Connection) -> None:
        if connection.socket is not None and connection.socket.write(self._packet(HEARTBEAT, {})):
            connection.heartbeats_sent += 1

    async def _confirm_sent(self, timeout: float | None = None) -> None:
        """Wait until every live update written is known to have reached the router: a
        heartbeat written after them is answered (the router takes a socket's packets in
        order)."""
        if not self._queue and not self._in_flight:
            return
        connection = self._connection
        if connection is not None and self._is_open():
            self._write_heartbeat(connection)
        wait = self.timeout if timeout is None else timeout
        self.doing = "waiting for its live updates to reach the router"
        await self.conditions.wait(
            lambda: True if not self._queue and not self._in_flight else NOT_YET,
            wait,
            lambda: (
                f"{self}: {len(self._queue) + len(self._in_flight)} live updates not known"
                f" to have reached the router within {wait} s" + self._socket_note()
            ),
        )

    async def _resync(self) -> None:
        """After a reconnection, as a reload: the updates a dead socket swallowed."""
        view = self.agent
        if view is None or view.is_onboarding or view.ended:
            return
        details = await self._agent_details(
            "/request_agent",
            {"provider_data": self.provider_data(), "client_timestamp": time.time()},
        )
        if details.get("agent_id") != view.agent_id or self.agent is not view:
            return
        init = details.get("init_task_data")
        past = init.get("past_live_updates") if isinstance(init, dict) else None
        for update in past if isinstance(past, list) else []:
            if isinstance(update, dict):
                self._deliver(view, update, None)
        self.conditions.changed()

    def _received(self, connection: _Connection, packet: dict[str, Any]) -> None:
        if connection is not self._connection or self.agent is None:
            return
        data = packet.get("data")
        data = data if isinstance(data, dict) else {}
        packet_type = packet.get("packet_type")
        if packet_type == HEARTBEAT:
            connection.heartbeats_answered += 1
            answered = connection.heartbeats_answered
            self._in_flight = [(p, index) for p, index in self._in_flight if index >= answered]
            self._set_status(self.agent, data.get("status"))
        elif packet_type == UPDATE_STATUS:
            self._set_status(self.agent, data.get("status"))
        elif packet_type == CLIENT_BOUND_LIVE_UPDATE:
            self._deliver(self.agent, data, connection)
        self.conditions.changed()

    def _set_status(self, view: AgentView, status: Any) -> None:
        if not isinstance(status, str) or status == view.status:
            return
        view.status = status
        view.statuses.append(status)
        if view.ended and view.ended_at is None:
            view.ended_at = time.time()

    def _deliver(
        self, view: AgentView, update: dict[str, Any], connection: _Connection | None
    ) -> None:
        """A client-bound update, from a socket or from `past_live_updates` (connection None)."""
        update_id = update.get("update_id")
        if not isinstance(update_id, str):
            if connection is None:
                return  # a replayed entry without an id cannot be told from one seen
        else:
            if connection is not None:
                if update_id in connection.seen:
                    self.duplicates.append(f"update {update_id} twice on one socket")
                connection.seen.add(update_id)
            if update_id in view.sent:
                return  # the page's own, replayed
            if update_id in view.received_ids:
                if connection is not None:
                    self.repeats += 1
                return
            view.received_ids.add(update_id)
        handles = update.get("handles")
        if isinstance(handles, str) and handles in view.answers:
            view.answers[handles] += 1
            if view.answers[handles] > 1:
                self.duplicates.append(f"remote call {handles} answered twice")
            answered = self._calls.get(handles)
            if answered is not None and not answered.called:
                answered.callback(update)
            return
        view.updates.append(update)

    def _closed(self, connection: _Connection, code: int | None) -> None:
        connection.closed = True
        connection.close_code = code
        if connection is not self._connection:
            self.conditions.changed()
            return
        self._last_close_code = code
        self._end_connection()
        final = self.agent is None or self.agent.ended
        if code in (CloseCode.NOT_YOURS, CloseCode.FINISHED) or final:
            self.conditions.changed()
            return
        self._schedule_reconnect()
        self.conditions.changed()

    def _end_connection(self) -> None:
        """Forget the current socket (it closed, or it is being replaced)."""
        connection = self._connection
        self._connection = None
        for timer in (self._heartbeat_timer,):
            if timer is not None and timer.active():
                timer.cancel()
        self._heartbeat_timer = None
        if connection is not None and connection.socket is not None and not connection.closed:
            connection.socket.sendClose()

    def _schedule_reconnect(self) -> None:
        if not self._live_wanted or self._paused or self.closed:
            return
        if self._reconnect_timer is not None and self._reconnect_timer.active():
            return
        ceiling = min(RECONNECT_MAX_DELAY, RECONNECT_MIN_DELAY * 2**self._reconnect_attempts)
        self._reconnect_attempts += 1
        delay = ceiling / 2 + self.random.random() * ceiling / 2
        self._reconnect_timer = self.reactor.callLater(delay, self._open_socket)

    async def _close_socket(self) -> None:
        if self._reconnect_timer is not None and self._reconnect_timer.active():
            self._reconnect_timer.cancel()
        self._reconnect_timer = None
        connection = self._connection
        if connection is None:
            return
        self._end_connection()
        if connection.socket is None or connection.closed:
            return
        try:
            await self.conditions.wait(
                lambda: True if connection.closed else NOT_YET,
                2.0,
                lambda: f"{self}: its socket did not close",
            )
        except WaitTimeout:
            connection.socket.drop()

    # --- pacing and injected trouble ---

    async def pause(self) -> None:
        """The pause a load run puts before each action (none in tests): for a bot that
        takes it before it makes what it sends."""
        await self._pause()

    async def _pause(self) -> None:
        if self.pace is not None:
            delay = self.pace()
            if delay > 0:
                await deferLater(self.reactor, delay)

    async def _step(self, pause: bool = True, last: bool = False) -> None:
        """Before each action of the bot: a pause, and the disruption when it is due (at
        the latest before the submission, the `last`)."""
        self.steps += 1
        if pause:
            await self._pause()
        trouble = self.disruption
        view = self.agent
        if (
            trouble is None
            or trouble.done
            or (self.steps < trouble.at_step and not last)
            or view is None
            or view.ended
            or view.is_onboarding
        ):
            return
        trouble.done = True
        if trouble.kind == "drop" and self._is_open():
            await self.drop_connection(trouble.offline)
        else:
            trouble.kind = "reload"  # a page with no socket has no connection to lose
            await self.reload()


def _is_a_page(worker: SimulatedWorker) -> Page:
    return worker  # mypy checks that a simulated worker is what a bot is told it gets
