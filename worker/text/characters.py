"""Character facts as numpy lookups: code points of a text, and which are whitespace."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.text.graphemes import FIRST_JOINER, ZWJ

CodePoints = npt.NDArray[np.uint32] | npt.NDArray[np.uint8]
"""Code points of a text: uint8 where it is all ASCII, uint32 otherwise."""

# Every code point for which str.isspace() holds lies below U+3001.
_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)
_ASCII_WHITESPACE = np.array([chr(c).isspace() for c in range(128)], dtype=bool)


# Bit flags of a code point for the checks at span edges (``edge_flags``).
SPACE = 1
ZERO_WIDTH_JOINER = 2
MAY_JOIN = 4
"""At or above ``FIRST_JOINER``: may join the character before it."""
_FLAGS_END = 0x3001  # every code point from here on: MAY_JOIN only
_EDGE_FLAGS = np.zeros(_FLAGS_END + 1, dtype=np.uint8)
_EDGE_FLAGS[_WHITESPACE] |= SPACE
_EDGE_FLAGS[ZWJ] |= ZERO_WIDTH_JOINER
_EDGE_FLAGS[FIRST_JOINER:] |= MAY_JOIN


def edge_flags(points: CodePoints) -> npt.NDArray[np.uint8]:
    """``SPACE``, ``ZERO_WIDTH_JOINER`` and ``MAY_JOIN`` of each code point, in one lookup."""
    flags: npt.NDArray[np.uint8] = _EDGE_FLAGS[points if points.dtype == np.uint8 else np.minimum(points, _FLAGS_END)]
    return flags


def code_points(text: str) -> CodePoints:
    """The text's code points, one per Python string index: a byte each where the text is ASCII
    (CPython knows that without reading it; a quarter of the copying)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def is_space(points: CodePoints) -> npt.NDArray[np.bool_]:
    """``str.isspace()`` for each code point."""
    result: npt.NDArray[np.bool_] = _ASCII_WHITESPACE[np.minimum(points, 127)] & (points < 128)
    high = points >= 128
    if high.any():
        result[high] = np.isin(points[high], _WHITESPACE)
    return result
