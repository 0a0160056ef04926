"""The framing between the worker and its engine processes (vLLM replicas, the engine host).

Every message is one frame: a 16-byte header (kind, payload length, request id; little endian)
and a payload. Token ids travel as one int32 array per request, scores come back as one
float32 matrix per request, so a batch of thousands of windows costs two memory copies and a
few system calls instead of per-window pickling.

    REQUEST  u32 window count, count x i32 window lengths, then all token ids as i32
    RESULT   u32 rows, u32 columns, then rows x columns f32 (the windows' scores, stacked)
    BEST     u32 rows, u32 class width (1 or 2 bytes), rows x f32 best probability, then rows x
             u8/u16 best class: for the aggregations that need no more (5 bytes per token
             instead of 4 per label)
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

from worker.text.scores import BestLabels, WindowScores

HEADER = struct.Struct("<IIQ")
REQUEST, RESULT, ERROR, READY, STATS, HEALTH, BEST = 1, 2, 3, 4, 5, 6, 7
KINDS = {REQUEST: "request", RESULT: "result", ERROR: "error", READY: "ready", STATS: "stats", HEALTH: "health",
         BEST: "best labels"}
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


def pack_best(scores: npt.NDArray[np.float32]) -> bytes:
    """BEST payload: each row's best class and its score, from the stacked score matrix."""
    return pack_best_labels(BestLabels.of(scores), scores.shape[1])


def pack_best_labels(best: BestLabels, num_labels: int) -> bytes:
    """BEST payload of best labels already chosen (by an engine that answers them itself)."""
    width = 1 if num_labels <= 256 else 2
    packed = best.classes.astype(np.uint8 if width == 1 else np.uint16)
    return _U32_PAIR.pack(len(best), width) + best.scores.astype(np.float32).tobytes() + packed.tobytes()


def pack_answer(scores: Sequence[WindowScores], num_labels: int) -> tuple[int, bytes]:
    """The frame kind and payload answering a request's windows: best labels stay best labels
    (BEST), score matrices go as one stacked matrix (RESULT)."""
    if scores and all(isinstance(s, BestLabels) for s in scores):
        best = [s for s in scores if isinstance(s, BestLabels)]
        stacked = BestLabels(np.concatenate([b.classes for b in best]), np.concatenate([b.scores for b in best]))
        return BEST, pack_best_labels(stacked, num_labels)
    matrices = [s for s in scores if not isinstance(s, BestLabels)]
    if len(matrices) != len(scores):
        raise WireError("an answer mixes best labels and score matrices")
    matrix = np.concatenate(matrices) if matrices else np.empty((0, num_labels), dtype=np.float32)
    return RESULT, pack_scores(matrix)


def unpack_answer(kind: int, payload: bytes | bytearray, lengths: Sequence[int]) -> list[WindowScores]:
    """A RESULT or BEST answer split back into one entry per window; ``WireError`` when it does
    not cover exactly the windows asked for."""
    result: list[WindowScores]
    if kind == BEST:
        best = unpack_best(payload)
        rows, result = len(best), list(split_best(best, lengths))
    else:
        matrix = unpack_scores(payload)
        rows, result = matrix.shape[0], list(split_rows(matrix, lengths))
    if rows != sum(lengths):
        raise WireError(f"{rows} score rows for {sum(lengths)} tokens")
    return result


def unpack_best(payload: bytes | bytearray) -> BestLabels:
    if len(payload) < _U32_PAIR.size:
        raise WireError("a best-labels payload without its shape")
    rows, width = _U32_PAIR.unpack_from(payload, 0)
    if width not in (1, 2) or len(payload) != _U32_PAIR.size + (4 + width) * rows:
        raise WireError(f"a best-labels payload of {len(payload)} bytes for {rows} rows of class width {width}")
    scores = np.frombuffer(payload, dtype=np.float32, count=rows, offset=_U32_PAIR.size)
    classes: npt.NDArray[np.integer[Any]] = np.frombuffer(
        payload, dtype=np.uint8 if width == 1 else np.uint16, offset=_U32_PAIR.size + 4 * rows)
    return BestLabels(classes, scores)


def split_best(best: BestLabels, lengths: Sequence[int]) -> list[BestLabels]:
    """One ``BestLabels`` view per window of a stacked answer (no copy)."""
    bounds = np.cumsum(lengths)[:-1].tolist() if len(lengths) > 1 else []
    if not lengths:
        return []
    pieces = zip(np.split(best.classes, bounds), np.split(best.scores, bounds), strict=True)
    return [BestLabels(classes, scores) for classes, scores in pieces]


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
