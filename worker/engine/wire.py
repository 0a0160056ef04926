"""The framing between the worker and its engine processes (vLLM replicas, the engine host).

Every message is one frame: a 16-byte header (kind, payload length, request id; little endian)
and a payload. Token ids travel as one int32 array per request, scores come back as one
float32 matrix per request, so a batch of thousands of windows costs two memory copies and a
few system calls instead of per-window pickling.

    REQUEST  u32 window count, count x i32 window lengths, then all token ids as i32
    RESULT   u32 rows, u32 columns, then rows x columns f32 (the windows' scores, stacked)
    ERROR    UTF-8 message: the request failed; the peer goes on
    READY    UTF-8 JSON: the engine has loaded its model (and says what it is)
    STATS    empty (a question) or UTF-8 JSON (the answer): the engine host's counters
    HEALTH   one byte, 1 or 0: the engine host's engine can take work, or not any more
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER = struct.Struct("<IIQ")
REQUEST, RESULT, ERROR, READY, STATS, HEALTH = 1, 2, 3, 4, 5, 6
KINDS = {REQUEST: "request", RESULT: "result", ERROR: "error", READY: "ready", STATS: "stats", HEALTH: "health"}
MAX_PAYLOAD = 2**32 - 1
_U32 = struct.Struct("<I")
_U32_PAIR = struct.Struct("<II")


class WireError(RuntimeError):
    """A frame that cannot be read: the peer is gone or speaks something else."""


def header(kind: int, request_id: int, size: int) -> bytes:
    if size > MAX_PAYLOAD:
        raise WireError(f"a {KINDS.get(kind, kind)} frame of {size} bytes is over the 4 GiB frame limit")
    return HEADER.pack(kind, size, request_id)


def pack_windows(windows: Sequence[Sequence[int]]) -> bytes:
    """REQUEST payload for a list of token id windows."""
    lengths = np.fromiter((len(w) for w in windows), dtype=np.int32, count=len(windows))
    total = int(lengths.sum())
    ids = np.fromiter(itertools.chain.from_iterable(windows), dtype=np.int32, count=total)
    return _U32.pack(len(windows)) + lengths.tobytes() + ids.tobytes()


def unpack_windows(payload: bytes | bytearray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """(lengths, concatenated token ids) of a REQUEST payload."""
    if len(payload) < _U32.size:
        raise WireError("a request payload without its window count")
    (count,) = _U32.unpack_from(payload, 0)
    lengths = np.frombuffer(payload, dtype=np.int32, count=count, offset=_U32.size)
    ids = np.frombuffer(payload, dtype=np.int32, offset=_U32.size + 4 * count)
    if count and (int(lengths.min()) <= 0 or int(lengths.sum()) != ids.size):
        raise WireError("a request payload whose window lengths do not match its token ids")
    return lengths, ids


def pack_scores(scores: npt.NDArray[np.float32]) -> bytes:
    """RESULT payload for the stacked ``[tokens, labels]`` score matrix of one request."""
    matrix = np.ascontiguousarray(scores, dtype=np.float32)
    rows, columns = matrix.shape
    return _U32_PAIR.pack(rows, columns) + matrix.tobytes()


def unpack_scores(payload: bytes | bytearray) -> npt.NDArray[np.float32]:
    if len(payload) < _U32_PAIR.size:
        raise WireError("a result payload without its shape")
    rows, columns = _U32_PAIR.unpack_from(payload, 0)
    if len(payload) != _U32_PAIR.size + 4 * rows * columns:
        raise WireError(f"a result payload of {len(payload)} bytes for a {rows}x{columns} matrix")
    data = np.frombuffer(payload, dtype=np.float32, offset=_U32_PAIR.size)
    return data.reshape(rows, columns)


def split_rows(matrix: npt.NDArray[np.float32], lengths: Sequence[int]) -> list[npt.NDArray[np.float32]]:
    """One ``[len(window), labels]`` view per window of a stacked matrix (no copy)."""
    bounds = np.cumsum(lengths)[:-1].tolist() if len(lengths) > 1 else []
    return list(np.split(matrix, bounds)) if lengths else []


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    request_id: int
    payload: bytearray


class FrameBuffer:
    """Cuts a byte stream into frames (used by the asyncio side, which receives in chunks)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        start = 0
        buffer = self._buffer
        while len(buffer) - start >= HEADER.size:
            kind, size, request_id = HEADER.unpack_from(buffer, start)
            if kind not in KINDS:
                raise WireError(f"unknown frame kind {kind}")
            end = start + HEADER.size + size
            if len(buffer) < end:
                break
            frames.append(Frame(kind, request_id, buffer[start + HEADER.size : end]))
            start = end
        if start:
            del buffer[:start]
        return frames


def read_frame(sock: socket.socket) -> Frame | None:
    """Blocking read of one frame (used by the vLLM replica); None on a clean end of stream."""
    header = _read_exactly(sock, HEADER.size, allow_eof=True)
    if header is None:
        return None
    kind, size, request_id = HEADER.unpack(header)
    if kind not in KINDS:
        raise WireError(f"unknown frame kind {kind}")
    payload = _read_exactly(sock, size, allow_eof=False) if size else bytearray()
    assert payload is not None
    return Frame(kind, request_id, payload)


def send_frame(sock: socket.socket, kind: int, request_id: int, payload: bytes | bytearray) -> None:
    sock.sendall(header(kind, request_id, len(payload)))
    if payload:
        sock.sendall(payload)


def ready_payload(info: dict[str, Any]) -> bytes:
    return json.dumps(info).encode()


def _read_exactly(sock: socket.socket, size: int, *, allow_eof: bool) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            if allow_eof and received == 0:
                return None
            raise WireError(f"the stream ended inside a frame ({received} of {size} bytes)")
        received += count
    return buffer
