"""Packets from the wire: odd input is a ProtocolError (the packet is dropped), never a crash."""

from __future__ import annotations

import pytest

from architect.protocol import Packet, ProtocolError, as_timestamp


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
