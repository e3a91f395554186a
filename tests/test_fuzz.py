"""Property-based fuzzing (hypothesis): generated malformed input at every edge, and what
must hold whatever comes (inputs: tests/fuzz_inputs.py).

- The router's HTTP edge (RouterWeb's real Site in memory, its hub on a task.Clock, a
  backend that answers every registration): any request to any route, with odd
  methods, targets, headers, framings and bodies, is answered 2xx-4xx, an error as
  the router's JSON error, and logs no traceback, error or broken line.
- The router's sockets (RouterSocket.onMessage, the path every WebSocket frame takes,
  for browsers and the backend alike): any sequence of frames, backend packets,
  closes and time passing raises nothing and logs no fault.
- The backend's packet handlers (ClientIOHandler.handle_packet, with the in-memory
  pool): any packet a router may send is handled or dropped with a line, never a
  traceback.
- A real embedded daemon, over real sockets: a few generated frames and requests.

Whatever the router writes to a socket, the backend's included, is strict JSON (as
browsers parse it and the database stores it). After each example a normal worker is
still served: it registers, its socket is answered, its submission reaches the backend.
What the properties found is kept below as plain tests (and in the tests of the module
that owns each rule).

`ARCHITECT_FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py` runs longer, with new
random inputs each run (tests/conftest.py: the hypothesis profiles).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from architect.config import RouterConfig
from architect.protocol import (
    AGENT_DETAILS,
    ALIVE,
    HEARTBEAT,
    LOG_ERROR,
    MAX_JSON_DEPTH,
    MAX_PACKET_DEPTH,
    MEPHISTO,
    MEPHISTO_BOUND_LIVE_UPDATE,
    REGISTER_AGENT,
    REQUEST_STATUSES,
    SUBMIT_METADATA,
    SUBMIT_ONBOARDING,
    SUBMIT_UNIT,
    UPDATE_STATUS,
    Handled,
    Packet,
    ProtocolError,
    Status,
)
from architect.router.hub import RouterHub
from architect.router.sessions import COOKIE_NAME, new_session
from architect.router.web import RouterWeb
from architect.router.websocket import RouterSocket
from tests.clients import Browser, open_socket, reactor, wait_for
from tests.daemon import Daemon, Daemons
from tests.fuzz_inputs import (
    AGENT,
    MULTIPART_BOUNDARY,
    OTHER_SESSION,
    SESSION,
    STORED,
    TOKEN,
    Answer,
    Frame,
    HttpRequest,
    check_answer,
    examples,
    frames,
    http_requests,
    ids,
    log_problems,
    long_run,
    nested,
    packet_dicts,
    parse_answers,
)
from tests.memory_http import RawHTTP
from tests.test_client_io import Backend

JSON_LIMIT = 64 * 1024  # max_json_bytes: deep nesting fits under it, and reaches the parser
BODY_LIMIT = 256 * 1024  # max_body_bytes
DAEMON_EXAMPLES = long_run() // 10 or 12  # real sockets: a tenth of a long run


# --- a router to fuzz ---


class FuzzSocket(RouterSocket):
    """A RouterSocket with no transport: what it is given goes through its real
    `onMessage`; what the hub writes to it is kept, as a browser would read it."""

    def __init__(
        self,
        hub: RouterHub,
        web: RouterWeb,
        session: str | None = None,
        token: str | None = None,
        origin: str | None = None,
    ) -> None:
        super().__init__()
        self.factory = web.socket_factory
        self.session, self.token, self.origin = session, token, origin
        self.received: list[Packet] = []
        self.close_code: int | None = None
        self.onOpen()

    def frame(self, frame: Frame) -> None:
        self.onMessage(frame.payload, frame.is_binary)

    def say(self, packet_type: str, subject_id: str, data: dict[str, Any] | None = None) -> None:
        self.onMessage(Packet(packet_type, subject_id, data or {}).to_json().encode(), False)

    def lost(self) -> None:
        self.onClose(True, 1000, None)

    # --- Link ---

    def send_packet(self, packet: Packet) -> None:
        # What the router writes is strict JSON (ProtocolError otherwise): what browsers
        # parse, and the backend can store.
        self.received.append(Packet.from_json(packet.to_json(), MAX_PACKET_DEPTH))

    def close(self, code: int) -> None:
        self.close_code = code

    def of_type(self, packet_type: str) -> list[Packet]:
        return [p for p in self.received if p.packet_type == packet_type]


class AnsweringBackend(FuzzSocket):
    """The backend's socket: it answers each registration and onboarding submission with
    a new agent (agent-1, agent-2...: `prefix` and a number), in task."""

    prefix = "agent-"

    def __init__(self, hub: RouterHub, web: RouterWeb, first_agent: int = 1) -> None:
        super().__init__(hub, web, token=TOKEN)
        self.answered = 0
        self.agents = first_agent - 1
        self.say(ALIVE, MEPHISTO)
        assert hub.backend is self
        # It asks for statuses at once, and again: the router then knows it has told
        # its agents (a request for an unknown one is answered, not held).
        self.say(REQUEST_STATUSES, MEPHISTO)
        self.say(REQUEST_STATUSES, MEPHISTO)

    def answer(self) -> None:
        while self.answered < len(self.received):
            packet = self.received[self.answered]
            self.answered += 1
            if packet.packet_type not in (REGISTER_AGENT, SUBMIT_ONBOARDING):
                continue
            self.agents += 1
            agent_id = f"{self.prefix}{self.agents}"
            request_id = packet.data["request_id"]
            details = {
                "request_id": request_id,
                "worker_id": "worker-1",
                "agent_id": agent_id,
                "init_task_data": {"text": "a unit"},
                "failure_reason": None,
            }
            self.say(AGENT_DETAILS, request_id, details)
            self.say(UPDATE_STATUS, agent_id, {"status": Status.IN_TASK})


def frontend(folder: Path) -> Path:
    static = folder / "static"
    (static / "images").mkdir(parents=True)
    static.joinpath("index.html").write_text("the task page")
    static.joinpath("app.js").write_bytes(b"0123456789" * 10)
    static.joinpath("images", "cat.png").write_bytes(b"png")
    folder.joinpath("secret.txt").write_text("secret")
    return static


class FuzzRouter:
    """RouterWeb's real Site over a hub on a task.Clock, reached in memory; its backend
    is connected and answers. AGENT is registered, for SESSION, before any fuzz."""

    def __init__(self, folder: Path) -> None:
        uploads = folder / "uploads"
        uploads.mkdir(mode=0o700)
        uploads.joinpath(STORED).write_bytes(b"an upload")
        self.config = RouterConfig(
            backend_token=TOKEN,
            max_json_bytes=JSON_LIMIT,
            max_body_bytes=BODY_LIMIT,
            upload_dir=uploads,
            static_dir=frontend(folder),
            min_free_disk_bytes=0,
        )
        self.clock = Clock()
        self.hub = RouterHub(self.clock, self.config)
        self.web = RouterWeb(self.hub, self.config)
        self.site = self.web.site()
        self.backend = AnsweringBackend(self.hub, self.web)
        details = self.registered(SESSION)
        assert details["agent_id"] == AGENT, details

    def socket(
        self, session: str | None = None, token: str | None = None, origin: str | None = None
    ) -> FuzzSocket:
        return FuzzSocket(self.hub, self.web, session, token, origin)

    def reconnect_backend(self) -> None:
        """A new connection of the backend (the last one may have been replaced)."""
        if self.hub.backend is not self.backend:
            self.backend = AnsweringBackend(self.hub, self.web, self.backend.agents + 1)

    async def exchange(self, request: HttpRequest) -> list[Answer]:
        """Send the request on a connection of its own: the answers to it, once whole
        (static files are written a piece per reactor turn), the connection then closed.
        A complete request must be answered."""
        connection = RawHTTP(self.site)
        connection.write(request.to_bytes())
        head = request.method == "HEAD"
        for _ in range(30):
            self.backend.answer()
            connection.pump.flush()
            if _whole(connection.received, head) or connection.closed:
                break
            await connection.settle(1)
        if not connection.closed:
            connection.pump.clientIO.loseConnection()
            connection.pump.flush()
        answers = parse_answers(connection.received, head)
        if request.complete:
            assert answers, "a complete request got no answer"
        return answers

    async def request(
        self, method: str, target: str, body: bytes = b"", *headers: tuple[bytes, bytes]
    ) -> Answer:
        request = HttpRequest(method, target, headers, body, "length")
        [answer] = await self.exchange(request)
        return answer

    def registered(self, session: str | None) -> dict[str, Any]:
        """A registration through the hub, answered: its agent_details' data."""
        answers: list[dict[str, Any]] = []
        d = self.hub.request_agent({"worker_name": "w1"}, None, session)
        d.addCallback(answers.append)
        self.backend.answer()
        [answer] = answers
        data: dict[str, Any] = answer["data"]
        return data

    async def assert_worker_served(self) -> None:
        """A new worker registers, its socket says alive and is answered, its live update
        and submissions reach the backend; the first worker (AGENT) still acts."""
        self.reconnect_backend()
        self.backend.prefix = "checked-agent-"  # an id no fuzzed packet named
        session = new_session()
        cookie = (b"Cookie", f"{COOKIE_NAME}={session}".encode())
        as_json = (b"Content-Type", b"application/json")
        body = json.dumps({"provider_data": {"worker_name": "w-check"}}).encode()
        answer = await self.request("POST", "/request_agent", body, as_json, cookie)
        assert answer.code == 200, answer
        agent_id = json.loads(answer.body)["data"]["agent_id"]
        assert isinstance(agent_id, str) and self.hub.agents.get(agent_id) is not None

        page = self.socket(session)
        page.say(ALIVE, agent_id)
        # (what waited in its outbox, then the cached status)
        assert {p.data["status"] for p in page.of_type(UPDATE_STATUS)} == {Status.IN_TASK}
        page.say(HEARTBEAT, agent_id)
        [beat] = page.of_type(HEARTBEAT)
        assert beat.data["status"] == Status.IN_TASK
        page.say(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u-check", "text": "hi"})
        [update] = self.backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)[-1:]
        assert update.subject_id == agent_id and update.data["update_id"] == "u-check"

        final = json.dumps({"USED_AGENT_ID": agent_id, "final_data": {"answer": 42}}).encode()
        answer = await self.request("POST", "/submit_task", final, as_json, cookie)
        assert (answer.code, json.loads(answer.body)) == (200, {"status": "Submitted!"})
        [unit] = self.backend.of_type(SUBMIT_UNIT)[-1:]
        assert (unit.subject_id, unit.data) == (agent_id, {"answer": 42})

        form = (
            f"--{MULTIPART_BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="USED_AGENT_ID"\r\n\r\n'
            f"{agent_id}\r\n"
            f"--{MULTIPART_BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="photo"; filename="cat.png"\r\n'
            "Content-Type: image/png\r\n\r\npng\r\n"
            f"--{MULTIPART_BOUNDARY}--\r\n"
        ).encode()
        multipart = (
            b"Content-Type",
            b"multipart/form-data; boundary=" + MULTIPART_BOUNDARY.encode(),
        )
        answer = await self.request("POST", "/submit_metadata", form, multipart, cookie)
        assert answer.code == 200, answer
        [metadata] = self.backend.of_type(SUBMIT_METADATA)[-1:]
        assert metadata.subject_id == agent_id and metadata.data["files"][0]["size"] == 3

        if self.hub.agents.get(AGENT) is not None:
            first = (b"Cookie", f"{COOKIE_NAME}={SESSION}".encode())
            error = json.dumps({"USED_AGENT_ID": AGENT, "error_data": {"e": 1}}).encode()
            answer = await self.request("POST", "/log_error", error, as_json, first)
            assert answer.code == 200, answer


def _whole(received: bytes, head: bool) -> bool:
    """Whether `received` holds at least one whole answer."""
    try:
        return bool(parse_answers(received, head))
    except (AssertionError, ValueError):
        return False


@pytest.fixture(scope="module")
def folders() -> Iterator[Iterator[Path]]:
    """A fresh folder for each example (hypothesis runs many in one test)."""
    with tempfile.TemporaryDirectory(prefix="architect-fuzz-") as top:

        def made() -> Iterator[Path]:
            n = 0
            while True:
                n += 1
                folder = Path(top, str(n))
                folder.mkdir()
                yield folder

        yield made()


def assert_no_problems(events: Sequence[Mapping[str, Any]], expected: tuple[str, ...] = ()) -> None:
    problems = log_problems(events, expected)
    assert problems == [], "\n".join(problems)


# --- the HTTP edge ---


@st.composite
def request_lists(draw: st.DrawFn) -> list[HttpRequest]:
    return draw(st.lists(http_requests(STORED), min_size=1, max_size=3))


@settings(max_examples=examples(150))
@given(requests=request_lists())
@pytest_twisted.ensureDeferred
async def test_any_request_is_answered_below_500_with_json_errors_and_no_fault(
    folders: Iterator[Path], requests: list[HttpRequest]
) -> None:
    router = FuzzRouter(next(folders))
    with capturedLogs() as events:
        for request in requests:
            for answer in await router.exchange(request):
                check_answer(answer)
        await router.assert_worker_served()
    assert_no_problems(events)


# --- the sockets ---

SOCKETS = [
    {"session": SESSION},  # the browser that registered AGENT
    {"session": OTHER_SESSION},
    {},  # no cookie
    {"session": SESSION, "origin": "https://elsewhere.example", "token": TOKEN},
    {"token": "wrong"},
    {"token": TOKEN},  # a second backend connection: replaces the first
]

socket_kinds = st.sampled_from(range(len(SOCKETS)))

backend_packets = packet_dicts(subjects=ids | st.sampled_from([AGENT, "agent-2", MEPHISTO]))


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest_twisted.ensureDeferred
async def test_any_frames_on_any_sockets_raise_nothing_and_log_no_fault(
    folders: Iterator[Path], data: st.DataObject
) -> None:
    router = FuzzRouter(next(folders))
    sockets = [router.socket(**SOCKETS[0]), router.socket(**SOCKETS[2])]
    with capturedLogs() as events:
        for _ in range(data.draw(st.integers(min_value=1, max_value=12), label="steps")):
            step = data.draw(
                st.sampled_from(["frame", "frame", "frame", "backend", "open", "close", "wait"]),
                label="step",
            )
            if step == "frame":
                which = data.draw(st.integers(0, len(sockets) - 1), label="socket")
                sockets[which].frame(data.draw(frames, label="frame"))
            elif step == "backend":
                raw = data.draw(backend_packets, label="backend packet")
                router.backend.frame(Frame(json.dumps(raw).encode()))
            elif step == "open":
                sockets.append(router.socket(**SOCKETS[data.draw(socket_kinds, label="kind")]))
            elif step == "close" and sockets:
                sockets.pop(data.draw(st.integers(0, len(sockets) - 1), label="closed")).lost()
            elif step == "wait":
                router.clock.advance(data.draw(st.sampled_from([1, 11, 16, 31, 61, 601])))
            if not sockets:
                sockets.append(router.socket())
            router.backend.answer()
        await router.assert_worker_served()
    assert_no_problems(events)


# --- the backend's packet handlers ---

# What a version mismatch is logged as: an error, meant for the researcher.
VERSION_MISMATCH_FORMATS = (
    "mephisto-task version mismatch: {text}",
    "the browser of {subject} runs mephisto-task {received}, expected {expected};"
    " update the task frontend",
)


@settings(max_examples=examples(150))
@given(data=st.data())
def test_any_packet_from_a_router_is_handled_or_dropped_with_one_line(data: st.DataObject) -> None:
    backend = Backend(units=[{"n": n} for n in range(20)])
    registered = backend.register("r-first", worker="w1")
    first = registered["agent_id"]
    known = st.sampled_from([first, MEPHISTO, "r-first", "r-new"])
    subjects = st.one_of(known, known, known, ids)
    outcomes: list[object] = []
    with capturedLogs() as events:
        for _ in range(data.draw(st.integers(min_value=1, max_value=10), label="packets")):
            raw = data.draw(packet_dicts(subjects), label="packet")
            try:  # as the backend's socket reads it (websocket_channel.py)
                packet = Packet.from_json(json.dumps(raw))
            except ProtocolError:
                continue  # dropped there, with one line
            handled = backend.handler.handle_packet(backend.channel, packet)
            handled.addBoth(outcomes.append)
            if data.draw(st.booleans(), label="time passes"):
                backend.clock.advance(data.draw(st.sampled_from([1, 5, 61]), label="seconds"))
        # A normal worker is still served.
        details = backend.register("r-check", worker="w-check")
        agent_id = details["agent_id"]
        assert agent_id is not None, details
        backend.channel.receive(MEPHISTO_BOUND_LIVE_UPDATE, agent_id, {"update_id": "u", "x": 1})
        backend.channel.receive(SUBMIT_UNIT, agent_id, {"answer": 42})
        assert backend.agent(agent_id).status == Status.COMPLETED
        assert [s.data for s in backend.store.of_agent(agent_id)] == [{"answer": 42}]
    assert all(isinstance(outcome, Handled) for outcome in outcomes), outcomes
    assert_no_problems(events, VERSION_MISMATCH_FORMATS)


# --- a real daemon, over real sockets ---


class RawClient(Protocol):
    """A TCP connection that writes bytes of its own and keeps what comes back."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


async def raw_exchange(port: int, request: HttpRequest) -> list[Answer]:
    """`request` on a connection of its own to the daemon: its answers (an incomplete
    request is given a moment, then its connection closed)."""
    client = RawClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    assert client.transport is not None
    client.transport.write(request.to_bytes())
    head = request.method == "HEAD"
    try:
        await wait_for(
            lambda: _whole(client.received, head) or client.lost.called,
            "an answer",
            deadline=5.0 if request.complete else 0.3,
        )
    except AssertionError:
        assert not request.complete, f"no answer to a complete request: {client.received!r}"
    if not client.lost.called:
        client.transport.loseConnection()
        await client.lost
    answers = parse_answers(client.received, head)
    if request.complete:
        assert answers, "a complete request got no answer"
    return answers


class FuzzedDaemon:
    """An embedded daemon for all the examples of one test, with a worker registered."""

    def __init__(self, daemon: Daemon, browser: Browser, agent_id: str) -> None:
        self.daemon = daemon
        self.browser = browser
        self.agent_id = agent_id
        self.checks = 0

    @classmethod
    async def start(cls, daemons: Daemons) -> FuzzedDaemon:
        daemon = await daemons.embedded(
            router={"max_json_bytes": JSON_LIMIT, "max_body_bytes": BODY_LIMIT},
            # Each example takes at most two units: its request's, and the check's.
            task={"units": tuple({"text": f"unit {n}"} for n in range(3 * DAEMON_EXAMPLES + 20))},
        )
        browser = Browser()
        agent_id = await cls.register(daemon, browser, "w-first")
        return cls(daemon, browser, agent_id)

    @staticmethod
    async def register(daemon: Daemon, browser: Browser, worker: str) -> str:
        provider = {"worker_name": worker, "agent_registration_id": f"a-{worker}"}
        code, answer = await browser.post_json(
            f"{daemon.url}/request_agent", {"provider_data": provider}
        )
        assert code == 200, answer
        agent_id = answer["data"]["agent_id"]
        assert isinstance(agent_id, str), answer
        return agent_id

    async def assert_worker_served(self) -> None:
        """A new worker registers, its socket is answered, its submission is stored."""
        self.checks += 1
        browser = Browser()
        agent_id = await self.register(self.daemon, browser, f"w-check-{self.checks}")
        page = await browser.open_socket(self.daemon.port)
        try:
            page.send(ALIVE, agent_id)
            page.send(HEARTBEAT, agent_id)
            beat = await page.next(HEARTBEAT)
            assert beat.data["status"] == Status.IN_TASK
        finally:
            await page.close()
        code, answer = await browser.post_json(
            f"{self.daemon.url}/submit_task",
            {"USED_AGENT_ID": agent_id, "final_data": {"answer": 42}},
        )
        assert (code, answer) == (200, {"status": "Submitted!"})
        stored = await self.daemon.database.list_submissions(agent_id=agent_id)
        assert [s.data for s in stored] == [{"answer": 42}]


_started: dict[int, FuzzedDaemon] = {}


async def fuzzed_daemon(daemons: Daemons) -> FuzzedDaemon:
    """The test's daemon: started at its first example (a fixture would be made again
    for each)."""
    if id(daemons) not in _started:
        _started.clear()
        _started[id(daemons)] = await FuzzedDaemon.start(daemons)
    return _started[id(daemons)]


@settings(
    max_examples=DAEMON_EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
@pytest_twisted.ensureDeferred
async def test_a_real_daemon_takes_any_frames_and_requests_over_real_sockets(
    daemons: Daemons, data: st.DataObject
) -> None:
    fuzzed = await fuzzed_daemon(daemons)
    port = fuzzed.daemon.port
    subjects = ids | st.just(fuzzed.agent_id)
    real_frames = st.one_of(
        frames, packet_dicts(subjects).map(lambda p: Frame(json.dumps(p).encode()))
    )
    with capturedLogs() as events:
        cookie = data.draw(st.booleans(), label="the worker's cookie")
        page = await (fuzzed.browser.open_socket(port) if cookie else open_socket(port))
        for frame in data.draw(st.lists(real_frames, max_size=4), label="frames"):
            page.send_raw(frame.payload, frame.is_binary)
        await page.close()
        for answer in await raw_exchange(port, data.draw(http_requests(STORED), label="request")):
            check_answer(answer)
        await fuzzed.assert_worker_served()
    assert_no_problems(events, VERSION_MISMATCH_FORMATS)


# --- found by these properties: each was a 5xx or a traceback ---


@pytest.mark.parametrize(
    "frame",
    [
        b'{"packet_type": [], "subject_id": "agent-1"}',  # was a TypeError out of onMessage
        b'{"packet_type": "alive", "subject_id": "agent-1\\nforged: a log line"}',
        b'{"packet_type": "alive", "subject_id": "\\ud800"}',  # broke the log file's writer
        b'{"packet_type": "mephisto_bound_live_update", "subject_id": "agent-1",'
        b' "data": {"text": NaN}}',  # the backend could not store it
        b'{"packet_type": "mephisto_bound_live_update", "subject_id": "agent-1", "data": '
        + b"[" * 600
        + b"]" * 600
        + b"}",  # the embedded link's copy of it overflowed the stack
    ],
)
def test_a_frame_the_router_cannot_take_is_dropped_with_one_line(
    tmp_path: Path, frame: bytes
) -> None:
    router = FuzzRouter(tmp_path)
    page = router.socket(SESSION)
    with capturedLogs() as events:
        page.frame(Frame(frame))
    assert_no_problems(events)
    assert [e["log_format"] for e in events] == ["dropped a malformed packet: {why}"]
    assert router.backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE) == []
    page.say(ALIVE, AGENT)
    assert page.of_type(UPDATE_STATUS)


@pytest.mark.parametrize(
    "final_data",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": 1e999}',
        '{"a": "\\ud800"}',
        '{"\\udfff": 1}',
        '{"a": ' + "[" * 600 + "]" * 600 + "}",
    ],
)
@pytest_twisted.ensureDeferred
async def test_json_the_backend_could_not_store_is_a_400(tmp_path: Path, final_data: str) -> None:
    """Python's parser takes NaN, Infinity and lone surrogates, which the database does
    not: the embedded backend answered 503 and logged a traceback (600 levels: a 500)."""
    router = FuzzRouter(tmp_path)
    body = f'{{"USED_AGENT_ID": "{AGENT}", "final_data": {final_data}}}'.encode()
    cookie = (b"Cookie", f"{COOKIE_NAME}={SESSION}".encode())
    with capturedLogs() as events:
        answer = await router.request(
            "POST", "/submit_task", body, (b"Content-Type", b"application/json"), cookie
        )
    assert answer.code == 400 and json.loads(answer.body) == {
        "error": "the body must be a JSON object"
    }
    assert router.backend.of_type(SUBMIT_UNIT) == []
    assert_no_problems(events)


@pytest_twisted.ensureDeferred
async def test_the_daemon_refuses_what_it_could_not_store_and_serves_on(daemons: Daemons) -> None:
    fuzzed = await FuzzedDaemon.start(daemons)
    url, agent_id = fuzzed.daemon.url, fuzzed.agent_id
    with capturedLogs() as events:
        for final_data in ('{"a": NaN}', '{"a": "\\ud800"}', "[" * 600 + "]" * 600):
            body = f'{{"USED_AGENT_ID": "{agent_id}", "final_data": {final_data}}}'.encode()
            assert (await fuzzed.browser.post_json(f"{url}/submit_task", body))[0] == 400
        page = await fuzzed.browser.open_socket(fuzzed.daemon.port)
        page.send(ALIVE, agent_id)
        update = {"packet_type": MEPHISTO_BOUND_LIVE_UPDATE, "subject_id": agent_id}
        page.send_raw(json.dumps({**update, "data": {"x": float("nan")}}).encode())
        page.send(HEARTBEAT, agent_id)
        assert (await page.next(HEARTBEAT)).data["status"] == Status.IN_TASK
        await page.close()
        await fuzzed.assert_worker_served()
    assert_no_problems(events)
    assert await fuzzed.daemon.database.list_submissions(agent_id=agent_id) == []


@pytest_twisted.ensureDeferred
async def test_a_version_with_control_characters_is_logged_on_one_line(tmp_path: Path) -> None:
    """The received version went into the router's warning as the page sent it: %0A
    forged a log line (the backend's error: test_client_io.py)."""
    router = FuzzRouter(tmp_path)
    with capturedLogs() as events:
        answer = await router.request("GET", "/task_config.json?mephisto_task_version=a%0Ab%ff")
    assert answer.code == 200
    assert_no_problems(events)
    [mismatch] = router.backend.of_type(LOG_ERROR)
    assert mismatch.data["received_version"] == "a\\nb\ufffd"


@pytest_twisted.ensureDeferred
async def test_data_a_browser_nests_as_deep_as_it_may_goes_to_the_backend_and_back(
    tmp_path: Path,
) -> None:
    """A body 100 levels deep is taken, and the packet carrying it is deeper: the
    backend's socket must take it (it dropped it as malformed: here, a 500), and the
    router the backend's answer carrying it further down (past_live_updates)."""
    router = FuzzRouter(tmp_path)
    deep = nested(MAX_JSON_DEPTH - 1, "array")  # in a body of one object: 100 levels
    cookie = (b"Cookie", f"{COOKIE_NAME}={SESSION}".encode())
    as_json = (b"Content-Type", b"application/json")
    body = f'{{"USED_AGENT_ID": "{AGENT}", "error_data": {deep}}}'.encode()
    assert (await router.request("POST", "/log_error", body, as_json, cookie)).code == 200
    [error] = router.backend.of_type(LOG_ERROR)
    assert error.data == {"error_data": json.loads(deep)}

    page = router.socket(SESSION)
    update = f'{{"packet_type": "mephisto_bound_live_update", "subject_id": "{AGENT}",'
    page.frame(Frame(f'{update} "data": {{"x": {nested(MAX_JSON_DEPTH - 3, "array")}}}}}'.encode()))
    [live] = router.backend.of_type(MEPHISTO_BOUND_LIVE_UPDATE)
    answers: list[dict[str, Any]] = []
    router.hub.request_agent({"worker_name": "w1"}, None, SESSION).addCallback(answers.append)
    request = router.backend.of_type(REGISTER_AGENT)[-1]
    details = {
        "request_id": request.data["request_id"],
        "agent_id": AGENT,
        "init_task_data": {"past_live_updates": [live.data]},
    }
    router.backend.say(AGENT_DETAILS, request.subject_id, details)
    [answer] = answers
    assert answer["data"]["init_task_data"]["past_live_updates"] == [live.data]


def test_an_answer_for_no_request_is_logged_on_one_line(tmp_path: Path) -> None:
    router = FuzzRouter(tmp_path)
    with capturedLogs() as events:
        router.backend.say(AGENT_DETAILS, AGENT, {"request_id": "r\nforged: a line"})
    assert_no_problems(events)
    assert len(events) == 1
