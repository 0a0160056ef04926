"""Confluent's wire format: magic byte 0, the schema id (4 bytes, big-endian), then the payload.

Protobuf payloads start with the message indexes, the path from the schema file's top-level
messages down to the record's message type: a zigzag varint count, then that many zigzag varint
indexes; the common path ``[0]`` (the first message) is written as the single byte 0.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0
_HEADER = struct.Struct(">bI")


class WireFormatError(ValueError):
    """The bytes are not in Confluent's wire format."""


@dataclass(frozen=True, slots=True)
class Framed:
    schema_id: int
    payload: bytes


def unframe(value: bytes) -> Framed:
    if len(value) < _HEADER.size:
        raise WireFormatError(f"{len(value)} bytes are too few for the 5-byte schema header")
    magic, schema_id = _HEADER.unpack_from(value)
    if magic != MAGIC:
        raise WireFormatError(f"the first byte is {magic & 0xFF}, not the magic byte {MAGIC}")
    return Framed(schema_id, value[_HEADER.size:])


def frame(schema_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + payload


def read_message_indexes(payload: bytes) -> tuple[tuple[int, ...], bytes]:
    """Split a Protobuf payload into its message indexes and the message bytes."""
    count, position = _read_zigzag(payload, 0)
    if count == 0:
        return (0,), payload[position:]
    if count < 0 or count > len(payload):
        raise WireFormatError(f"a message index count of {count} does not fit the payload")
    indexes = []
    for _ in range(count):
        index, position = _read_zigzag(payload, position)
        if index < 0:
            raise WireFormatError(f"a negative message index ({index})")
        indexes.append(index)
    return tuple(indexes), payload[position:]


def write_message_indexes(indexes: tuple[int, ...]) -> bytes:
    if indexes == (0,):
        return b"\x00"
    return b"".join(_zigzag(n) for n in (len(indexes), *indexes))


def _read_zigzag(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise WireFormatError("the message indexes end in the middle of a varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7
        if shift > 63:
            raise WireFormatError("a message index varint is longer than 64 bits")


def _zigzag(number: int) -> bytes:
    encoded = (number << 1) ^ (number >> 63)
    out = bytearray()
    while True:
        low = encoded & 0x7F
        encoded >>= 7
        if encoded:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
