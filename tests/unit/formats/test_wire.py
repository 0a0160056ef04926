"""Confluent's wire format: header and Protobuf message indexes, checked against confluent-kafka's own writer."""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry.common.serde import SchemaId
from hypothesis import given
from hypothesis import strategies as st

from worker.formats.wire import WireFormatError, frame, read_message_indexes, unframe, write_message_indexes


def test_frame_is_magic_byte_then_big_endian_id() -> None:
    assert frame(258, b"body") == b"\x00\x00\x00\x01\x02body"
    framed = unframe(b"\x00\x00\x00\x01\x02body")
    assert (framed.schema_id, framed.payload) == (258, b"body")


@pytest.mark.parametrize(("value", "problem"), [
    (b"", "too few"), (b"\x00\x00\x01", "too few"), (b"\x01\x00\x00\x00\x01x", "not the magic byte"),
    (b'{"text": "plain JSON"}', "not the magic byte"),
])
def test_bytes_not_in_the_wire_format_are_refused(value: bytes, problem: str) -> None:
    with pytest.raises(WireFormatError, match=problem):
        unframe(value)


@pytest.mark.parametrize(("indexes", "encoded"), [
    ((0,), b"\x00"), ((1,), b"\x02\x02"), ((2, 0, 3), b"\x06\x04\x00\x06"),
])
def test_message_indexes_are_zigzag_varints_with_the_short_form_for_the_first_message(
        indexes: tuple[int, ...], encoded: bytes) -> None:
    assert write_message_indexes(indexes) == encoded
    assert read_message_indexes(encoded + b"msg") == (indexes, b"msg")


@given(st.lists(st.integers(min_value=0, max_value=2**31 - 1), min_size=1, max_size=6))
def test_header_and_message_indexes_match_confluents_writer(indexes: list[int]) -> None:
    confluent = SchemaId("PROTOBUF", schema_id=70000, message_indexes=indexes).id_to_bytes()
    ours = frame(70000, write_message_indexes(tuple(indexes)))
    assert ours == confluent
    assert read_message_indexes(unframe(confluent).payload) == (tuple(indexes), b"")


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\x04\x02", b"\x03\x02"])
def test_truncated_or_negative_message_indexes_are_refused(payload: bytes) -> None:
    with pytest.raises(WireFormatError):
        read_message_indexes(payload)
