"""What a hostile worker, a broken client or an odd router may send: hypothesis strategies
for the fuzz tests (tests/test_fuzz.py), and the checks they make of what came back.

- JSON: values of every type and size (numbers past a float's range, lone surrogates,
  NaN), and JSON texts that are not quite JSON (deep nesting, 5,000-digit numbers);
- packets: as their senders write them with one value odd (`plausible_packets`), and
  the seven fields with values of every shape; WebSocket frames (text or binary)
  holding them or anything else;
- HTTP: requests as a page sends them with one thing odd (`plausible_requests`), and
  requests to every route with odd methods, targets, headers, framings and bodies
  (JSON and multipart), as raw bytes (`HttpRequest.to_bytes`); a parser of the raw
  answers (`parse_answers`);
- `log_problems`: what in a captured log means a fault (a traceback, an error, a line
  that is not one printable UTF-8 line).

The run's size: `examples(n)` is n, or `ARCHITECT_FUZZ_EXAMPLES` when that is set (the
profile of tests/conftest.py then also draws new random inputs each run).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote_from_bytes

import attrs
from hypothesis import strategies as st
from twisted.logger import LogLevel, formatEvent

from architect.protocol import MAX_ID_LENGTH, MEPHISTO, PACKET_TYPES, Status
from architect.router.sessions import COOKIE_NAME
from architect.upload_names import owner_mark

# --- the run's size ---

FUZZ_EXAMPLES_VARIABLE = "ARCHITECT_FUZZ_EXAMPLES"


def long_run() -> int:
    """The examples per property asked for by the environment (0: the default run)."""
    return int(os.environ.get(FUZZ_EXAMPLES_VARIABLE) or 0)


def examples(default: int) -> int:
    return long_run() or default


# --- who is who in a fuzzed router (tests/test_fuzz.py builds it so) ---

TOKEN = "backend-secret"
SESSION = "fuzzSessionOfTheWorkersBrowser01"  # the cookie of the browser that registered AGENT
OTHER_SESSION = "anotherBrowsersSessionCookie0002"
AGENT = "agent-1"  # the agent the backend named for SESSION before the fuzz begins
STORED = owner_mark(AGENT) + "0" * 24 + ".txt"  # an upload of AGENT's the router holds
assert len(SESSION) == len(OTHER_SESSION) == 32


# --- text and JSON ---

# Every code point, lone surrogates (valid JSON escapes: "\ud800") and controls included.
any_char = st.characters(codec=None, exclude_categories=())
odd_text = st.text(any_char, max_size=12)

# Numbers a JSON parser may give: past a float's range, not finite, exact or not.
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 2**53 + 1, 2**63, 2**64, 10**308, 10**309, 1e308, 5e-324]),
)

ids = st.one_of(
    st.sampled_from(
        [
            AGENT,
            MEPHISTO,
            "",
            " ",
            AGENT + "\n",
            AGENT.upper(),
            "onboarding-" + AGENT,
            "x" * MAX_ID_LENGTH,
            "x" * (MAX_ID_LENGTH + 1),
            "\ud800",
            "\x00",
            "../../etc/passwd",
            "agent-1\r\nforged: log line",
        ]
    ),
    odd_text,
)

scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text, ids)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4)


json_values = st.recursive(scalars, _containers, max_leaves=12)
json_objects = st.dictionaries(odd_text | st.sampled_from(["update_id", "text"]), json_values)

# Field values of every type: what a field meant to hold a string, an object or a
# number may hold instead.
any_field = st.one_of(ids, json_values, st.sampled_from([[], {}, [AGENT], {"a": 1}]))


def nested(depth: int, kind: str) -> str:
    """JSON text nesting `depth` arrays or objects."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# JSON texts that are not quite JSON, or JSON that is hard to take: nesting near and past
# the interpreter's recursion limit, numbers past what int() parses, NaN, byte order marks.
NEAR_THE_RECURSION_LIMIT = [100, 500, 800, 900, 950, 975, 990, 1000, 1100, 5000, 50_000]
odd_json_texts = st.one_of(
    st.builds(
        nested, st.sampled_from(NEAR_THE_RECURSION_LIMIT), st.sampled_from(["array", "object"])
    ),
    st.sampled_from(
        [
            "1" * 5000,
            "-" + "9" * 4300,
            "1e999",
            "-1e999",
            "NaN",
            "Infinity",
            "-Infinity",
            '{"a": NaN}',
            "\ufeff{}",
            '{"a": 1, "a": 2}',
            '"\\ud800"',
            '{"\\ud800": "\\udfff"}',
            "{",
            "",
            "null",
            "[]",
            "{}",
            '{"__proto__": {}}',
            "0" * 1000,
            '"' + "\\u0000" * 50 + '"',
        ]
    ),
)


def json_text(value: Any) -> str:
    """`value` as JSON text, as Python writes it (NaN and Infinity as such)."""
    return json.dumps(value)


# --- packets and frames ---

# Where a plausible packet or body has its odd value (in a body: the odd JSON text).
ODD = "$odd$"

packet_types = st.one_of(
    st.sampled_from(sorted(PACKET_TYPES)),
    st.sampled_from(["ALIVE", "alive ", "", "unknown_type", "__class__"]),
    any_field,
)
statuses = st.one_of(st.sampled_from(sorted(Status.ALL)), any_field)
timestamps = st.one_of(st.none(), numbers, any_field, st.just(True))


def packet_data(packet_type: Any) -> st.SearchStrategy[Any]:
    """`data` for a packet of this type: the shape it should have, with odd values, or
    anything at all."""
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "update_id": any_field,
            "text": any_field,
            "status": statuses,
            "request_id": any_field,
            "agent_id": any_field,
            "provider_data": _provider_data(),
            "init_task_data": any_field,
            "onboarding_data": any_field,
            "error_type": st.sampled_from(["version-mismatch", "other"]) | any_field,
            "received_version": any_field,
            "files": _submitted(),
            "target": any_field,
            "args": any_field | odd_json_texts,
        },
    )
    statuses_by_agent = st.dictionaries(ids, statuses, max_size=4)
    if packet_type == "return_statuses":
        return statuses_by_agent | shaped
    return st.one_of(shaped, json_objects, json_values, st.none())


def packet_dicts(subjects: st.SearchStrategy[Any] = ids) -> st.SearchStrategy[dict[str, Any]]:
    """Packets as a peer sends them with one value odd, and packets of any shape."""
    plausible = plausible_packets(subjects)
    return st.one_of(plausible, plausible, plausible, any_packets(subjects))


# Packets of each type as their senders write them, with ODD where the odd value goes.
PLAUSIBLE_PACKETS: list[tuple[str, Any]] = [
    ("register_agent", {"provider_data": {"worker_name": "w1", "provider_type": ODD}}),
    ("register_agent", {"provider_data": {"worker_name": ODD}, "request_id": "r-odd"}),
    ("register_agent", {"provider_data": {"worker_name": "w1"}, "request_id": ODD}),
    ("register_agent", {"provider_data": {"worker_name": "w1", "agent_registration_id": ODD}}),
    ("register_agent", {"provider_data": ODD}),
    ("submit_onboarding", {"onboarding_data": ODD, "request_id": "r-odd"}),
    ("submit_onboarding", {"onboarding_data": {"answer": 1}, "request_id": ODD}),
    ("submit_unit", {"answer": ODD}),
    ("submit_unit", {"files": ODD}),
    ("submit_unit", {"files": [{"filename": ODD, "originalname": "a.txt"}]}),
    ("submit_metadata", {"feedback": ODD}),
    ("mephisto_bound_live_update", {"update_id": ODD, "text": "hi"}),
    ("mephisto_bound_live_update", {"update_id": "u-odd", "text": ODD}),
    ("mephisto_bound_live_update", {"request_id": "c1", "target": ODD, "args": ODD}),
    ("return_statuses", {AGENT: ODD}),
    ("return_statuses", ODD),
    ("log_error", {"error_type": "version-mismatch", "received_version": ODD}),
    ("log_error", {"error_type": "version-mismatch", "text": ODD}),
    ("log_error", ODD),
    ("agent_details", {"request_id": ODD, "agent_id": AGENT, "failure_reason": None}),
    ("agent_details", {"request_id": "r-odd", "agent_id": ODD, "init_task_data": ODD}),
    ("update_status", {"status": ODD}),
    ("client_bound_live_update", {"update_id": ODD, "text": ODD}),
    ("heartbeat", ODD),
    ("alive", ODD),
]


def _put(shape: Any, odd: Any) -> Any:
    """`shape` with `odd` in place of ODD."""
    if shape == ODD:
        return odd
    if isinstance(shape, dict):
        return {key: _put(value, odd) for key, value in shape.items()}
    if isinstance(shape, list):
        return [_put(value, odd) for value in shape]
    return shape


@st.composite
def plausible_packets(draw: st.DrawFn, subjects: st.SearchStrategy[Any]) -> dict[str, Any]:
    packet_type, shape = draw(st.sampled_from(PLAUSIBLE_PACKETS))
    return {
        "packet_type": packet_type,
        "subject_id": draw(subjects),
        "data": _put(shape, draw(any_field)),
        "client_timestamp": draw(st.none() | numbers),
    }


@st.composite
def any_packets(draw: st.DrawFn, subjects: st.SearchStrategy[Any]) -> dict[str, Any]:
    """A packet as a JSON object: each of its fields present or not, of any shape, and
    fields no packet has."""
    packet_type = draw(packet_types)
    fields = {
        "packet_type": st.just(packet_type),
        "subject_id": subjects,
        "data": packet_data(packet_type),
        "client_timestamp": timestamps,
        "router_incoming_timestamp": timestamps,
        "router_outgoing_timestamp": timestamps,
        "server_timestamp": timestamps,
        "extra": json_values,
    }
    present = draw(
        st.sets(st.sampled_from(sorted(fields))) | st.just({"packet_type", "subject_id", "data"})
    )
    return {name: draw(fields[name]) for name in sorted(present)}


@attrs.frozen
class Frame:
    """A WebSocket message as the router's socket protocol gets it."""

    payload: bytes
    is_binary: bool = False


def _text_frame(text: str) -> Frame:
    return Frame(text.encode("utf-8", "surrogatepass"))


frames = st.one_of(
    packet_dicts().map(json_text).map(_text_frame),
    packet_dicts().map(json_text).map(_text_frame),
    packet_dicts().map(lambda p: Frame(json_text(p).encode(), is_binary=True)),
    odd_json_texts.map(_text_frame),
    json_values.map(json_text).map(_text_frame),
    st.binary(max_size=64).map(Frame),
    st.binary(max_size=64).map(lambda b: Frame(b, is_binary=True)),
    st.sampled_from([b"\xff\xfe", b'{"packet_type": "alive", "subject_id": "\xff"}']).map(Frame),
)


# --- HTTP ---

ROUTES = [
    "/request_agent",
    "/register_worker",
    "/submit_onboarding",
    "/submit_task",
    "/submit_metadata",
    "/log_error",
    "/task_config.json",
    "/architect.js",
    "/is_alive",
    "/get_timestamp",
    "/download_file/",
    "/",
    "/index.html",
    "/app.js",
    "/images",
    "/images/",
    "/images/cat.png",
    "/nothing-here.html",
]
METHODS = ["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT"]
methods = st.sampled_from(METHODS) | st.sampled_from(["get", "FOO", "M-SEARCH", "POST "])


def _percent(data: bytes) -> str:
    return quote_from_bytes(data, safe="/")


path_segments = st.one_of(
    st.binary(max_size=6).map(lambda b: quote_from_bytes(b, safe="")),
    st.sampled_from(
        ["..", ".", "", "%00", "%", "%zz", "%2F", "..%2F..%2F", "%ff", "%c3", "%e9t%e9", "a%00b"]
    ),
    st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=6),
)


def upload_names(stored: str) -> st.SearchStrategy[str]:
    """Names under /download_file/: one stored (AGENT's), well-shaped ones not stored,
    and any other."""
    return st.one_of(
        st.sampled_from(
            [
                stored,
                stored.upper(),
                "0" * 32,
                "0" * 32 + ".txt",
                "0" * 32 + ".",
                "..%2Fsecret.txt",
                "..",
                "%2e%2e",
                "a/b",
            ]
        ),
        path_segments,
    )


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    keys = st.sampled_from(["mephisto_task_version", "token", "agent", "x", ""]) | st.binary(
        max_size=4
    ).map(_percent)
    values = st.one_of(
        st.sampled_from(
            ["2.0.4", "2.0.3", "9" * 100, TOKEN, AGENT, "%ff", "%00", "", "%", "%0A", "%ed%a0%80"]
        ),
        st.binary(max_size=8).map(lambda b: quote_from_bytes(b, safe="")),
    )
    pairs = draw(st.lists(st.tuples(keys, values, st.booleans()), max_size=4))
    parts = [f"{k}={v}" if with_value else k for k, v, with_value in pairs]
    separator = draw(st.sampled_from(["&", "&&", ";"]))
    return "?" + separator.join(parts)


@st.composite
def targets(draw: st.DrawFn, stored: str) -> str:
    """The request line's target."""
    kind = draw(st.sampled_from(["route", "route", "route", "download", "path", "odd"]))
    if kind == "route":
        target = draw(st.sampled_from(ROUTES))
    elif kind == "download":
        target = "/download_file/" + draw(upload_names(stored))
    elif kind == "path":
        target = "/" + "/".join(draw(st.lists(path_segments, min_size=1, max_size=3)))
    else:
        target = draw(
            st.sampled_from(["*", "x", "//", "http://elsewhere/is_alive", "/%", "", "?", "#x"])
        )
    if draw(st.booleans()):
        target += draw(query_strings())
    return target


# Header values: any bytes but the line's end (Twisted reads header values as bytes).
header_bytes = st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))

MULTIPART_BOUNDARY = "fuzz-boundary"


def _latin1(text: str) -> bytes:
    return text.encode("latin-1", "replace")


content_types = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"multipart/form-data; boundary=" + MULTIPART_BOUNDARY.encode(),
            b'multipart/form-data; boundary="' + MULTIPART_BOUNDARY.encode() + b'"',
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
            b"multipart/form-data; boundary=other",
            b"MULTIPART/FORM-DATA; BOUNDARY=" + MULTIPART_BOUNDARY.encode(),
            b"multipart/form-data; boundary=" + b"x" * 200,
            b"text/plain",
            b"application/x-www-form-urlencoded",
            b"",
        ]
    ),
    header_bytes,
)

cookies = st.one_of(
    st.sampled_from(
        [
            f"{COOKIE_NAME}={SESSION}",
            f"{COOKIE_NAME}={OTHER_SESSION}",
            f"{COOKIE_NAME}={SESSION}; {COOKIE_NAME}={OTHER_SESSION}",
            f"{COOKIE_NAME}=",
            f"{COOKIE_NAME}={SESSION[:-1]}",
            f'{COOKIE_NAME}="{SESSION}"',
            f"a=b; {COOKIE_NAME}={SESSION}",
            ";;;=;",
            "=" * 100,
            "x" * 9000,
        ]
    ).map(_latin1),
    header_bytes,
)

ranges = st.one_of(
    st.sampled_from(
        [
            b"bytes=0-0",
            b"bytes=10-19",
            b"bytes=-5",
            b"bytes=-0",
            b"bytes=0-",
            b"bytes=100-",
            b"bytes=99999999999999999999-",
            b"bytes=-99999999999999999999",
            b"bytes=5-2",
            b"bytes=0-1,0-1",
            b"bytes=50-59,0-9",
            b"bytes=",
            b"bytes=-",
            b"lines=0-1",
            b"bytes=\xff",
        ]
    ),
    header_bytes,
)

OPTIONAL_HEADERS: dict[bytes, st.SearchStrategy[bytes]] = {
    b"Cookie": cookies,
    b"Range": ranges,
    b"Authorization": st.sampled_from([b"Bearer " + TOKEN.encode(), b"Bearer", b"Basic x"])
    | header_bytes,
    b"Origin": st.sampled_from([b"https://elsewhere.example", b"null"]) | header_bytes,
    b"X-Forwarded-Proto": st.sampled_from([b"https", b"http", b"HTTPS "]) | header_bytes,
    b"Expect": st.sampled_from([b"100-continue"]) | header_bytes,
    b"Connection": st.sampled_from([b"close", b"keep-alive", b"Upgrade"]) | header_bytes,
    b"Upgrade": st.sampled_from([b"websocket", b"h2c"]) | header_bytes,
    b"Sec-WebSocket-Version": st.sampled_from([b"13", b"8"]) | header_bytes,
    b"Sec-WebSocket-Key": st.sampled_from([b"dGhlIHNhbXBsZSBub25jZQ=="]) | header_bytes,
    b"Host": st.sampled_from([b"tasks.example", b"", b"\xff\xfe", b"a:b:c", b"[::1]:99999"])
    | header_bytes,
    b"Accept-Encoding": st.sampled_from([b"gzip", b"*"]) | header_bytes,
    b"If-Modified-Since": st.sampled_from([b"Thu, 01 Jan 2099 00:00:00 GMT"]) | header_bytes,
    b"If-Range": header_bytes,
    b"Referer": header_bytes,
    b"X-Odd": header_bytes,
}

# How a body is framed. Only "length" and "chunked" make a complete request that must be
# answered; the others may leave the server waiting for more, or make the rest of the
# bytes a request of their own.
FRAMINGS = ["length", "length", "length", "chunked", "none", "short", "long", "both", "odd", "te"]


# --- bodies ---


def _provider_data() -> st.SearchStrategy[Any]:
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "worker_name": st.sampled_from(["w1", "w-fuzz", ""]) | any_field,
            "provider_type": st.sampled_from(["mock", "MOCK"]) | any_field,
            "agent_registration_id": st.sampled_from(["a1-w1"]) | any_field,
            "assignment_id": any_field,
            "USED_AGENT_ID": ids | any_field,
            "onboarding_data": json_objects | any_field,
        },
    )
    return st.one_of(shaped, any_field)


def _submitted() -> st.SearchStrategy[Any]:
    """Submitted data (final_data, metadata): any, or naming uploaded files."""
    entry = st.fixed_dictionaries(
        {},
        optional={
            "filename": st.sampled_from([STORED, "0" * 32, "..", "a/b"]) | ids | any_field,
            "originalname": any_field,
            "mimetype": any_field,
            "size": any_field,
        },
    )
    files = st.lists(entry | any_field, max_size=3) | any_field
    return st.one_of(json_objects, any_field, st.fixed_dictionaries({"files": files}))


def json_bodies() -> st.SearchStrategy[Any]:
    """The JSON body of any of the routes, with fields missing, of other types or extra."""
    return st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "USED_AGENT_ID": ids | any_field,
                "provider_data": _provider_data(),
                "final_data": _submitted(),
                "metadata": _submitted(),
                "error_data": any_field,
                "client_timestamp": timestamps,
            },
        ),
        json_values,
    )


@st.composite
def multipart_bodies(draw: st.DrawFn) -> bytes:
    """A multipart/form-data body with the fields of a submission and files, some of it
    malformed."""
    boundary = MULTIPART_BOUNDARY.encode()
    names = st.sampled_from(["USED_AGENT_ID", "final_string_data", "metadata", "file", ""]) | (
        odd_text.map(lambda t: t.encode("utf-8", "surrogatepass").decode("latin-1"))
    )
    values = st.one_of(
        ids.map(lambda t: t.encode("utf-8", "surrogatepass")),
        json_bodies().map(lambda v: json_text(v).encode()),
        odd_json_texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=16),
    )
    filenames = st.one_of(
        st.sampled_from(["cat.png", "", "../../x.txt", "a.PNG", "x" * 300, "no-extension", "."]),
        odd_text,
    ).map(lambda t: t.encode("utf-8", "surrogatepass"))
    parts: list[bytes] = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        name = draw(names).encode("latin-1", "replace")
        head = b'Content-Disposition: form-data; name="' + name + b'"'
        if draw(st.booleans()):
            head += b'; filename="' + draw(filenames) + b'"'
            if draw(st.booleans()):
                head += b"\r\nContent-Type: " + draw(content_types)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            head = draw(header_bytes)  # a part without a usable head
        parts.append(b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + draw(values) + b"\r\n")
    ending = draw(
        st.sampled_from([b"--" + boundary + b"--\r\n", b"--" + boundary + b"--", b"", b"--"])
    )
    return b"".join(parts) + ending


# --- requests ---


@attrs.frozen
class HttpRequest:
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    framing: str
    version: str = "HTTP/1.1"

    @property
    def complete(self) -> bool:
        """Whether the bytes make one whole request, which the router must answer."""
        return self.framing in ("length", "chunked") and self.version in ("HTTP/1.1", "HTTP/1.0")

    def to_bytes(self) -> bytes:
        lines = [f"{self.method} {self.target} {self.version}".encode("latin-1", "replace")]
        lines += [name + b": " + value for name, value in self.headers]
        body = self.body
        if self.framing == "length":
            lines.append(b"Content-Length: %d" % len(body))
        elif self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(body)) + b"0\r\n\r\n"
        elif self.framing == "short":  # more is announced than sent
            lines.append(b"Content-Length: %d" % (len(body) + 10))
        elif self.framing == "long":  # the rest is read as a request of its own
            lines.append(b"Content-Length: %d" % (len(body) // 2))
        elif self.framing == "both":
            lines += [b"Transfer-Encoding: chunked", b"Content-Length: %d" % len(body)]
        elif self.framing == "odd":
            lines.append(
                b"Content-Length: "
                + (b"-1", b"1e3", b"0x10", b" 5", b"99999999999999999999", b"1, 2")[len(body) % 6]
            )
        elif self.framing == "te":
            lines.append(
                b"Transfer-Encoding: "
                + (b"gzip", b"chunked, chunked", b"identity", b"gzip, chunked", b"")[len(body) % 5]
            )
        return b"\r\n".join([*lines, b"", b""]) + body


def _chunks(body: bytes) -> list[bytes]:
    if not body:
        return []
    size = max(1, len(body) // 3)
    return [body[start : start + size] for start in range(0, len(body), size)]


def http_requests(stored: str) -> st.SearchStrategy[HttpRequest]:
    """Requests as a page sends them, with one thing odd, and requests of any kind;
    `stored` is the name of an upload the router holds (AGENT's)."""
    return plausible_requests(stored) | any_requests(stored)


odd_values = st.one_of(
    odd_json_texts,
    json_values.map(json_text),
    st.sampled_from(['"\\ud800"', '"\\udfff x"', '{"\\ud800": 1}', "NaN", "1e999", "[NaN]"]),
)

# The JSON bodies of the routes a page posts to, each with ODD somewhere in it.
PLAUSIBLE_BODIES: dict[str, list[Any]] = {
    "/request_agent": [
        {"provider_data": {"worker_name": "w1", "odd": ODD}},
        {"provider_data": {"worker_name": ODD, "agent_registration_id": "a1-w1"}},
        {"provider_data": {"worker_name": "w1", "agent_registration_id": ODD}},
        {"provider_data": {"worker_name": "w1", "provider_type": ODD}},
        {"provider_data": ODD},
        {"provider_data": {"worker_name": "w1"}, "client_timestamp": ODD},
    ],
    "/submit_onboarding": [
        {"provider_data": {"USED_AGENT_ID": AGENT, "onboarding_data": {"answer": ODD}}},
        {"provider_data": {"USED_AGENT_ID": AGENT, "onboarding_data": ODD}},
        {"provider_data": {"USED_AGENT_ID": ODD}},
    ],
    "/submit_task": [
        {"USED_AGENT_ID": AGENT, "final_data": {"answer": ODD}},
        {"USED_AGENT_ID": AGENT, "final_data": ODD},
        {"USED_AGENT_ID": AGENT, "final_data": {"files": ODD}},
        {"USED_AGENT_ID": AGENT, "final_data": {"files": [{"filename": ODD}]}},
        {"USED_AGENT_ID": AGENT, "final_data": {}, "client_timestamp": ODD},
        {"USED_AGENT_ID": ODD, "final_data": {}},
    ],
    "/submit_metadata": [
        {"USED_AGENT_ID": AGENT, "metadata": {"answer": ODD}},
        {"USED_AGENT_ID": AGENT, "metadata": ODD},
    ],
    "/log_error": [
        {"USED_AGENT_ID": AGENT, "error_data": ODD},
        {"USED_AGENT_ID": AGENT, "error_data": {"error_type": "version-mismatch", "text": ODD}},
        {"USED_AGENT_ID": ODD, "error_data": {}},
    ],
}
PLAUSIBLE_BODIES["/register_worker"] = PLAUSIBLE_BODIES["/request_agent"]

SESSION_COOKIE = f"{COOKIE_NAME}={SESSION}".encode()


def _field(name: str, value: bytes) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"'.encode()
    return b"--" + MULTIPART_BOUNDARY.encode() + b"\r\n" + head + b"\r\n\r\n" + value + b"\r\n"


@st.composite
def plausible_requests(draw: st.DrawFn, stored: str) -> HttpRequest:
    """A request as a page of the task (or the backend) sends it, with one thing odd in
    it: a value (NaN, a lone surrogate, deep nesting, a huge number, another type), the
    query string, a header."""
    route = draw(st.sampled_from([*sorted(PLAUSIBLE_BODIES), "GET", "GET"]))
    headers = [(b"Cookie", draw(st.just(SESSION_COOKIE) | cookies))]
    odd = draw(odd_values).encode("utf-8", "surrogatepass")
    if route == "GET":
        method = draw(st.sampled_from(["GET", "GET", "HEAD"]))
        target = draw(
            st.sampled_from(
                ["/task_config.json", "/architect.js", "/app.js", "/", "/download_file/"]
            )
        )
        if target == "/download_file/":
            target += draw(upload_names(stored)) + f"?token={TOKEN}"
            if draw(st.booleans()):
                target += "&agent=" + draw(st.sampled_from([AGENT, "%0A", "%ff"]) | path_segments)
            method = draw(st.sampled_from([method, "DELETE"]))
        elif draw(st.booleans()):
            target += draw(query_strings())
        body = b""
        if draw(st.booleans()):
            headers.append((b"Range", draw(ranges)))
    elif route in ("/submit_task", "/submit_metadata") and draw(st.booleans()):
        method, target = "POST", route
        data_field = "final_string_data" if route == "/submit_task" else "metadata"
        agent = draw(st.just(AGENT) | ids).encode("utf-8", "surrogatepass")
        parts = [_field("USED_AGENT_ID", agent), _field(data_field, odd)]
        if draw(st.booleans()):
            filename = draw(st.sampled_from(["cat.png", "../x", "", "a" * 300]) | odd_text)
            parts.append(
                b"--" + MULTIPART_BOUNDARY.encode() + b"\r\n"
                b'Content-Disposition: form-data; name="photo"; filename="'
                + filename.encode("utf-8", "surrogatepass")
                + b'"\r\nContent-Type: image/png\r\n\r\npng\r\n'
            )
        body = b"".join(parts) + b"--" + MULTIPART_BOUNDARY.encode() + b"--\r\n"
        headers.append(
            (b"Content-Type", b"multipart/form-data; boundary=" + MULTIPART_BOUNDARY.encode())
        )
    else:
        method, target = "POST", route
        shape = json_text(draw(st.sampled_from(PLAUSIBLE_BODIES[route]))).encode()
        body = shape.replace(json_text(ODD).encode(), odd, 1)
        headers.append((b"Content-Type", b"application/json"))
    for name in draw(st.sets(st.sampled_from(sorted(OPTIONAL_HEADERS)), max_size=2)):
        if name not in (b"Cookie", b"Range", b"Host"):
            headers.append((name, draw(OPTIONAL_HEADERS[name])))
    framing = draw(st.sampled_from(["length", "length", "chunked"]))
    return HttpRequest(method, target, tuple(headers), body, framing)


@st.composite
def any_requests(draw: st.DrawFn, stored: str) -> HttpRequest:
    """Any request to any route, any of its parts odd."""
    method = draw(methods)
    target = draw(targets(stored))
    headers: list[tuple[bytes, bytes]] = []
    body_kind = draw(st.sampled_from(["json", "json", "multipart", "odd_json", "bytes", "none"]))
    if body_kind == "json":
        body = json_text(draw(json_bodies())).encode("utf-8", "surrogatepass")
    elif body_kind == "multipart":
        body = draw(multipart_bodies())
    elif body_kind == "odd_json":
        body = draw(odd_json_texts).encode("utf-8", "surrogatepass")
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=64))
    else:
        body = b""
    if body_kind != "none" or draw(st.booleans()):
        default_type = b"multipart/form-data; boundary=" + MULTIPART_BOUNDARY.encode()
        json_type = b"application/json"
        headers.append(
            (b"Content-Type", draw(st.sampled_from([default_type, json_type]) | content_types))
            if body_kind == "multipart"
            else (b"Content-Type", draw(st.just(json_type) | content_types))
        )
    for name in draw(st.sets(st.sampled_from(sorted(OPTIONAL_HEADERS)), max_size=4)):
        headers.append((name, draw(OPTIONAL_HEADERS[name])))
    if draw(st.integers(min_value=0, max_value=5)) == 0:  # a header twice
        headers.append(draw(st.sampled_from(headers or [(b"X-Odd", b"")])))
    return HttpRequest(
        method=method,
        target=target,
        headers=tuple(headers),
        body=body,
        framing=draw(st.sampled_from(FRAMINGS)),
        version=draw(st.sampled_from(["HTTP/1.1"] * 8 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1.1x"])),
    )


# --- answers ---


@attrs.frozen
class Answer:
    code: int
    headers: dict[bytes, list[bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def parse_answers(data: bytes, head: bool = False) -> list[Answer]:
    """The HTTP answers in `data`, in order (`head`: the first answers a HEAD request).
    Anything that is not an answer (bytes after the last one) is an AssertionError."""
    answers: list[Answer] = []
    while data:
        top, separator, data = data.partition(b"\r\n\r\n")
        assert separator, f"an answer's head without its end: {top[:200]!r}"
        status, *lines = top.split(b"\r\n")
        version, _, rest = status.partition(b" ")
        assert version in (b"HTTP/1.1", b"HTTP/1.0"), status
        code = int(rest[:3])
        headers: dict[bytes, list[bytes]] = {}
        for line in lines:
            name, colon, value = line.partition(b":")
            assert colon, f"a header line without a colon: {line!r}"
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        answer_head = Answer(code, headers, b"")
        if code < 200 or code in (204, 304) or head:  # (1xx: an interim answer)
            body = b""
            head = head and code < 200
        elif (answer_head.header(b"transfer-encoding") or b"").lower() == b"chunked":
            body, data = _dechunk(data)
        elif answer_head.header(b"content-length") is not None:
            length = int(answer_head.header(b"content-length") or b"0")
            assert len(data) >= length, "an answer shorter than its Content-Length"
            body, data = data[:length], data[length:]
        else:  # to the connection's end
            body, data = data, b""
        answers.append(Answer(code, headers, body))
        if code == 101:  # the rest is a WebSocket's
            break
    return answers


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        size_line, separator, data = data.partition(b"\r\n")
        assert separator, "a chunked answer cut short"
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            _, _, data = data.partition(b"\r\n")
            return body, data
        body, data = body + data[:size], data[size + 2 :]


def check_answer(answer: Answer) -> None:
    """Never a 5xx; an error with a body says it as the router's JSON error."""
    assert answer.code < 500, f"answered {answer.code}: {answer.body[:300]!r}"
    if answer.code >= 400 and answer.body:
        assert answer.header(b"content-type") == b"application/json", answer
        error = json.loads(answer.body)
        assert list(error) == ["error"] and isinstance(error["error"], str), error


# --- the log ---


def _unprintable(char: str) -> bool:
    return char != "\t" and unicodedata.category(char) in ("Cc", "Cs")


def log_problems(
    events: Iterable[Mapping[str, Any]], expected_errors: Sequence[str] = ()
) -> list[str]:
    """What in these log events means the code failed, or let input through unchecked:
    a traceback (`log_failure`), an error or critical event (but those whose format is
    among `expected_errors`), "Unhandled Error", or a line that is not one line of
    printable UTF-8 text (a newline forges log lines; a lone surrogate breaks the log
    file's writer, which then logs a traceback of its own)."""
    problems: list[str] = []
    for event in events:
        text = formatEvent(dict(event))
        if event.get("log_failure") is not None:
            problems.append(f"a traceback: {text[:300]!r}: {event['log_failure']}")
        elif event.get("log_level") in (LogLevel.error, LogLevel.critical):
            if event.get("log_format") not in expected_errors:
                problems.append(f"an {event['log_level'].name} event: {text[:300]!r}")
        if "Unhandled Error" in text or "Traceback" in text:
            problems.append(f"a traceback in a line: {text[:300]!r}")
        bad = [char for char in text if _unprintable(char)]
        if bad:
            problems.append(f"a line with {bad[:3]!r} in it: {text[:300]!r}")
    return problems
