"""The Architect wire protocol: packets, packet types, statuses, failure reasons.

Pure: parsing and serialising with validation, no I/O. docs/protocol.md tells
the meaning of each type.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, ClassVar, NoReturn

import attrs
import orjson

from architect.log_text import UNPRINTABLE, printable

# Packet types.
ALIVE = "alive"
HEARTBEAT = "heartbeat"
REGISTER_AGENT = "register_agent"
AGENT_DETAILS = "agent_details"
SUBMIT_ONBOARDING = "submit_onboarding"
SUBMIT_UNIT = "submit_unit"
SUBMIT_METADATA = "submit_metadata"
MEPHISTO_BOUND_LIVE_UPDATE = "mephisto_bound_live_update"
CLIENT_BOUND_LIVE_UPDATE = "client_bound_live_update"
UPDATE_STATUS = "update_status"
REQUEST_STATUSES = "request_statuses"
RETURN_STATUSES = "return_statuses"
LOG_ERROR = "log_error"
# Architect's own, only between an Architect router and an Architect backend that agreed to
# it (see CONFIRM below): how the backend handled a submission the router journaled.
SUBMISSION_HANDLED = "submission_handled"
# Architect's own too, router -> backend, only with the events extension (EVENTS below).
CONNECTION_EVENTS = "connection_events"

PACKET_TYPES = frozenset(
    {
        ALIVE,
        HEARTBEAT,
        REGISTER_AGENT,
        AGENT_DETAILS,
        SUBMIT_ONBOARDING,
        SUBMIT_UNIT,
        SUBMIT_METADATA,
        MEPHISTO_BOUND_LIVE_UPDATE,
        CLIENT_BOUND_LIVE_UPDATE,
        UPDATE_STATUS,
        REQUEST_STATUSES,
        RETURN_STATUSES,
        LOG_ERROR,
        SUBMISSION_HANDLED,
        CONNECTION_EVENTS,
    }
)


# The confirmation extension. An Architect router offers it in its WebSocket handshake
# answer (the header below); an Architect backend takes it up by naming it in the `data`
# of its `alive`. From then on, and only on that connection, each submission the router
# journaled carries a top-level "confirm_id", and the backend answers it with a
# `submission_handled` packet once it is committed (or refused). Mephisto's router sends
# no such header and Mephisto's backend names nothing in its alive: neither sees either.
EXTENSIONS_HEADER = "Architect-Extensions"
CONFIRM = "confirm"
# The resume extension, agreed the same way: a backend that restarted with its router
# names to it the agents it carries on whose pages hold a socket, in an `update_status`
# whose data also has "expect_socket_within": seconds. The router then holds each seat that
# long for its page, as for a page that lost its socket, and tells the page only the status.
RESUME = "resume"
EXPECT_SOCKET_WITHIN = "expect_socket_within"
# The events extension, agreed the same way: the router sends the agents' connection
# events (architect/connection_events.py) in `connection_events` packets, in bounded
# batches, to be kept with the run.
EVENTS = "events"
EXTENSIONS = (CONFIRM, RESUME, EVENTS)  # what an Architect router offers


class Outcome:
    """How the backend handled a submission (a `submission_handled` packet's "outcome")."""

    STORED = "stored"  # committed, now or before (a repeat)
    REFUSED = "refused"  # never to be kept (its agent expired): "reason" says why
    FAILED = "failed"  # not stored this time (the database failed): to be sent again

    ALL = frozenset({STORED, REFUSED, FAILED})


@attrs.frozen
class Handled:
    """What the backend made of a packet: an Outcome, and why when refused."""

    outcome: str = Outcome.STORED
    reason: str = ""


class SubmissionRefused(Exception):
    """A handler's refusal of a submission that can never be kept (its message: why)."""


class CloseCode:
    """Why the router closed a WebSocket (Architect's own codes, in the range for
    applications), with the reason text sent beside the code."""

    REFUSED = 4000  # not accepted as the backend: a wrong or missing token
    REPLACED = 4001  # a newer backend connection took this one's place
    SILENT = 4002  # said nothing (no first packet) within [router] first_packet_timeout
    NOT_YOURS = 4003  # spoke for an agent another browser registered (router/sessions.py)
    FINISHED = 4004  # its agent finished and the router forgot it ([router] status_retention)
    MOVED = 4005  # its page's socket is on another router now (several routers over Redis)
    SERVICE_RESTART = 1012  # the daemon stops (architect/drain.py): connect to the next one
    # Never sent; what a socket's end is recorded as (RFC 6455) when it gave no code:
    NO_STATUS = 1005  # a close frame without a code
    ABNORMAL = 1006  # no close frame at all: the connection broke

    REASONS: ClassVar[dict[int, str]] = {
        REFUSED: "refused: wrong or missing backend token",
        REPLACED: "replaced by a newer backend connection",
        SILENT: "no packet named an agent this router knows: a socket must say whom it speaks for",
        NOT_YOURS: "this agent belongs to another browser",
        FINISHED: "this agent is finished",
        MOVED: "this page is connected through another router now",
        SERVICE_RESTART: "the server restarts: connect again",
    }


# The subject id with which the backend names itself.
MEPHISTO = "mephisto"

# The longest agent id a socket may name: the backend's are 32 to 48 characters.
MAX_ID_LENGTH = 128

# An answer to `request_statuses` may come in several `return_statuses` packets (each
# far below any peer's message size limit); Architect's router ends each answer with an
# empty one. (Mephisto's routers send one packet.)

# The version of mephisto-task we speak; the published 2.0.4 bundle calls itself 2.0.3.
MEPHISTO_TASK_VERSION = "2.0.4"
COMPATIBLE_TASK_VERSIONS = frozenset({"2.0.3", "2.0.4"})


def version_mismatch(received: str) -> dict[str, Any]:
    """The data of the log_error a router sends about a page running another version of
    mephisto-task: Mephisto's backend prints its `text`, ours the two versions."""
    # A version's length, printable: a page writes no more into the logs.
    received = printable(received[:64])
    return {
        "error_type": "version-mismatch",
        "expected_version": MEPHISTO_TASK_VERSION,
        "received_version": received,
        "text": (
            f"a page runs mephisto-task {received!r}, where {MEPHISTO_TASK_VERSION} is expected"
            " (or 2.0.3, as the published 2.0.4 bundle calls itself): this may cause"
            f" unexpected errors; update the task frontend to mephisto-task {MEPHISTO_TASK_VERSION}"
        ),
    }


class Status:
    """Agent statuses, as exact strings on the wire."""

    NONE = "none"
    ACCEPTED = "accepted"
    ONBOARDING = "onboarding"
    WAITING = "waiting"
    IN_TASK = "in task"
    COMPLETED = "completed"
    DISCONNECT = "disconnect"
    TIMEOUT = "timeout"
    PARTNER_DISCONNECT = "partner disconnect"
    EXPIRED = "expired"
    RETURNED = "returned"
    APPROVED = "approved"
    SOFT_REJECTED = "soft_rejected"
    REJECTED = "rejected"
    MEPHISTO_DISCONNECT = "mephisto disconnect"

    ALL = frozenset(
        {
            NONE,
            ACCEPTED,
            ONBOARDING,
            WAITING,
            IN_TASK,
            COMPLETED,
            DISCONNECT,
            TIMEOUT,
            PARTNER_DISCONNECT,
            EXPIRED,
            RETURNED,
            APPROVED,
            SOFT_REJECTED,
            REJECTED,
            MEPHISTO_DISCONNECT,
        }
    )
    # Which are active, final, counted...: architect/lifecycle.py.


class FailureReason:
    """Texts shown to a worker who is refused a unit."""

    NOT_QUALIFIED = "You are not currently qualified to work on this task."
    TOO_MANY_CONCURRENT = (
        "You are currently working on too many tasks concurrently to accept another."
        " Please finish your current work."
    )
    MAX_UNITS = "You have already completed the maximum amount of tasks this requester allows."
    NO_WORK = "There is no work available for you right now. Please try again later."
    TASK_MISSING = (
        "This task is no longer available to you: it was already completed,"
        " or you were disconnected long enough for it to be cleared."
    )
    # Architect's own: the agent was not submitted within [task] assignment_duration.
    EXPIRED = (
        "This task is no longer available to you: the time allowed for it ran out"
        " before it was submitted. Please return it and accept a new one."
    )
    # Architect's own: the agent was registered by another browser (router/sessions.py).
    OTHER_BROWSER = (
        "This task is already open in another browser. Please go on working there,"
        " or return the task there and accept a new one."
    )
    # Architect's own: a worker id the task cannot take (see registration.worker_identity_problem).
    BAD_WORKER_ID = (
        "This task cannot take your worker id: it must be 1 to 100 letters, digits"
        " and . _ : @ + - characters, starting with a letter or a digit."
    )


def as_timestamp(value: Any) -> float | None:
    """A JSON number as a float; None for anything else: not a number, a boolean, or an
    integer too large for a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class ProtocolError(ValueError):
    """A packet or request body that does not follow the protocol."""


# How deep the JSON a browser sends (a request body, a socket's packet) may nest: far
# more than any task's data needs, and far from the interpreter's recursion limit (the
# embedded link copies what it hands on, the database writes it: both recurse once per
# level). Packets between a router and a backend carry that data a few levels down
# (`data`, `init_task_data`, `past_live_updates`...): they may nest a little deeper.
MAX_JSON_DEPTH = 100
MAX_PACKET_DEPTH = 128
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is too large for a number")
    return number


# (One decoder: json.loads with options builds a new one per call.)
_STRICT_JSON = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def _json_problem(value: Any, max_depth: int) -> str | None:
    """What makes a decoded value one the router must not take, or None."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return "a string holds a lone surrogate (\\ud800-\\udfff): not Unicode text"
            continue
        if isinstance(item, dict):
            children = [*item, *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return f"JSON nested deeper than {max_depth} levels"
        stack.extend((child, depth + 1) for child in children)
    return None


def decode_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON text as RFC 8259 has it, to a value; ProtocolError for anything else.

    Python's parser also takes NaN and Infinity (and 1e999 as infinity), and strings
    with lone surrogates (`"\\ud800"`): no browser, nor the database, takes them back.
    And a value nested near the recursion limit breaks whatever recurses over it later.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")  # strict: UTF-8 holds no surrogate
            surrogate = False
        else:
            surrogate = _LONE_SURROGATE.search(text) is not None
        value = _STRICT_JSON.decode(text)
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"not valid JSON: {e}") from None
    # Walked only when it may be needed: a lone surrogate comes escaped (\\ud800) unless
    # it was in the text already; nesting needs brackets.
    escaped = "\\u" in text
    if surrogate or escaped or text.count("[") + text.count("{") > max_depth:
        problem = _json_problem(value, max_depth)
        if problem is not None:
            raise ProtocolError(problem)
    return value


_TIMESTAMP_FIELDS = (
    "client_timestamp",
    "router_incoming_timestamp",
    "router_outgoing_timestamp",
    "server_timestamp",
)


# One encoder for every packet (json.dumps with options builds a new one per call).
_COMPACT = json.JSONEncoder(separators=(",", ":"))
# For sizes only: what JSON cannot hold (task code may hand anything to the in-process
# link) counts as its repr. ASCII output, so characters are bytes.
_SIZING = json.JSONEncoder(separators=(",", ":"), default=repr)


def compact_json(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, for the wire: orjson (about ten times the standard
    library's speed here: a tenth of the router's CPU per registration was json), or the
    standard library for what orjson refuses (integers past 64 bits, keys that are not
    strings, types it does not know), so that nothing sent before is refused now."""
    try:
        return orjson.dumps(value)
    except TypeError:  # (orjson.JSONEncodeError is one)
        return _COMPACT.encode(value).encode("utf-8")


def data_size(data: Any) -> int:
    """What a packet's data (a live update) weighs in every bound of router and backend:
    the length of its compact JSON."""
    return len(_SIZING.encode(data))


@attrs.define
class Packet:
    packet_type: str
    subject_id: str
    data: dict[str, Any] = attrs.field(factory=dict)
    client_timestamp: float | None = None
    router_incoming_timestamp: float | None = None
    router_outgoing_timestamp: float | None = None
    server_timestamp: float | None = None
    # The confirmation extension's id of a journaled submission; on the wire only when set.
    confirm_id: str | None = attrs.field(default=None, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        raw = {
            "packet_type": self.packet_type,
            "subject_id": self.subject_id,
            "data": self.data,
            "client_timestamp": self.client_timestamp,
            "router_incoming_timestamp": self.router_incoming_timestamp,
            "router_outgoing_timestamp": self.router_outgoing_timestamp,
            "server_timestamp": self.server_timestamp,
        }
        if self.confirm_id is not None:
            raw["confirm_id"] = self.confirm_id
        return raw

    def to_json(self) -> str:
        return _COMPACT.encode(self.to_dict())

    def to_bytes(self) -> bytes:
        """The packet as a WebSocket frame's UTF-8 JSON (`compact_json`)."""
        return compact_json(self.to_dict())

    @classmethod
    def from_dict(cls, raw: object, with_confirm_id: bool = False) -> Packet:
        """Validate a decoded JSON value as a packet; raise ProtocolError if it is not one.

        A "confirm_id" is read only `with_confirm_id` (the backend, from its router): a
        browser's packet never carries one further."""
        if not isinstance(raw, dict):
            raise ProtocolError("a packet must be a JSON object")
        packet_type = raw.get("packet_type")
        if not isinstance(packet_type, str) or packet_type not in PACKET_TYPES:
            raise ProtocolError(f"unknown packet_type {packet_type!r}")
        subject_id = raw.get("subject_id")
        if not isinstance(subject_id, str) or not subject_id or UNPRINTABLE.search(subject_id):
            raise ProtocolError("subject_id must be a non-empty string of printable characters")
        data = raw.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ProtocolError("data must be a JSON object")
        stamps: dict[str, float | None] = {}
        for name in _TIMESTAMP_FIELDS:
            value = raw.get(name)
            stamps[name] = as_timestamp(value)
            if value is not None and stamps[name] is None:
                raise ProtocolError(f"{name} must be a number or null")
        confirm_id = raw.get("confirm_id") if with_confirm_id else None
        if confirm_id is not None and not is_confirm_id(confirm_id):
            raise ProtocolError("confirm_id must be a short string of printable characters")
        packet = cls(packet_type, subject_id, data)
        packet.client_timestamp = stamps["client_timestamp"]
        packet.router_incoming_timestamp = stamps["router_incoming_timestamp"]
        packet.router_outgoing_timestamp = stamps["router_outgoing_timestamp"]
        packet.server_timestamp = stamps["server_timestamp"]
        packet.confirm_id = confirm_id
        return packet

    @classmethod
    def from_frame(
        cls,
        payload: bytes,
        is_binary: bool,
        max_depth: int = MAX_JSON_DEPTH,
        with_confirm_id: bool = False,
    ) -> Packet:
        """A WebSocket message: packets are JSON text, never binary frames."""
        if is_binary:
            raise ProtocolError("a binary frame: packets are JSON text")
        return cls.from_dict(decode_json(payload, max_depth), with_confirm_id)

    @classmethod
    def from_json(cls, text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Packet:
        return cls.from_dict(decode_json(text, max_depth))


def is_confirm_id(value: object) -> bool:
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH and not UNPRINTABLE.search(value)
    )
