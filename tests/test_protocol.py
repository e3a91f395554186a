"""Packets from the wire: odd input is a ProtocolError (the packet is dropped), never a crash."""

from __future__ import annotations

import pytest

from architect.protocol import (
    MAX_JSON_DEPTH,
    MAX_PACKET_DEPTH,
    Packet,
    ProtocolError,
    as_timestamp,
    decode_json,
)


@pytest.mark.parametrize(
    "frame",
    [
        b"[" * 200_000 + b"]" * 200_000,  # nested past the parser's recursion limit
        b'{"packet_type": "alive", "subject_id": "a", "client_timestamp": 1' + b"0" * 400 + b"}",
        b'{"packet_type": "alive", "subject_id": "a", "server_timestamp": true}',
        b"\xff\xfe not text",
    ],
)
def test_odd_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        Packet.from_frame(frame, is_binary=False)


def test_a_binary_frame_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        Packet.from_frame(b'{"packet_type": "alive", "subject_id": "a"}', is_binary=True)


@pytest.mark.parametrize(
    ("value", "stamp"),
    [(1.5, 1.5), (2, 2.0), (10**400, None), (float("nan"), None), (True, None), ("1", None)],
)
def test_timestamps_are_finite_numbers_or_nothing(value: object, stamp: float | None) -> None:
    assert as_timestamp(value) == stamp


# Found by the fuzz tests (tests/test_fuzz.py): each was a traceback, a 500 or a 503 and
# a traceback in the backend (the database takes neither NaN nor a lone surrogate, the
# embedded link's copy of a value nested 600 deep overflowed the stack).


@pytest.mark.parametrize(
    "frame",
    [
        b'{"packet_type": [], "subject_id": "a"}',  # was a TypeError out of onMessage
        b'{"packet_type": {}, "subject_id": "a"}',
        b'{"packet_type": "alive", "subject_id": "\\ud800"}',  # a log line no file takes
        b'{"packet_type": "alive", "subject_id": "agent-1\\nforged: a log line"}',
        b'{"packet_type": "alive", "subject_id": "\\u0000"}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"x": NaN}}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"x": -Infinity}}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"x": 1e999}}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"x": "\\udfff"}}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"\\ud800": 1}}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"x": "\xed\xa0\x80"}}',
        b'{"packet_type": "alive", "subject_id": "a", "data": {"x": '
        + b"[" * MAX_JSON_DEPTH
        + b"]" * MAX_JSON_DEPTH
        + b"}}",
    ],
)
def test_what_the_router_and_the_backend_could_not_take_is_a_protocol_error(
    frame: bytes,
) -> None:
    with pytest.raises(ProtocolError):
        Packet.from_frame(frame, is_binary=False)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a surrogate pair is a character
        ('"\\\\ud800"', "\\ud800"),  # an escaped backslash, then text
        ('"\\ud7ff \\ue000"', "\ud7ff \ue000"),  # either side of the surrogates
        ("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1), None),
        ("1" + "0" * 400, 10**400),  # an integer: stored as written
        ("1.5e300", 1.5e300),
    ],
)
def test_strict_json_takes_what_json_allows(text: str, value: object) -> None:
    decoded = decode_json(text)
    if value is not None:
        assert decoded == value
    assert decode_json(text.encode()) == decoded
    deeper = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(ProtocolError, match="nested deeper"):
        decode_json(deeper)
    # Packets between a router and a backend carry a browser's data a few levels down.
    assert decode_json(deeper, MAX_PACKET_DEPTH)
