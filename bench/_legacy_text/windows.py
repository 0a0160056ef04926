"""Merging the score matrices of overlapping windows back into one row per token.

Each content token takes its scores from the window in which it has the most context: the
largest distance to a window edge that cuts the document (the document's own start and end are
not cuts). Ties go to the earlier window. Inside an overlap of ``stride`` tokens this splits the
overlap in the middle: the first half keeps the left window's scores, the second half the right's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from bench._legacy_text.tokenize import EncodedText

_FAR = np.iinfo(np.int64).max // 2


def document_scores(encoded: EncodedText, window_scores: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    """``[num_tokens, num_labels]`` scores of the document's content tokens."""
    offset = encoded.content_offset
    if len(window_scores) == 1:
        return window_scores[0][offset : offset + encoded.num_tokens]
    first = np.asarray(encoded.window_starts, dtype=np.int64)
    stop = np.minimum(first + encoded.window_content, encoded.num_tokens)
    lengths = stop - first
    # Every (window, token) pair, window by window, as flat arrays.
    window = np.repeat(np.arange(len(first)), lengths)
    position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths - first, lengths)
    left = np.where(first[window] > 0, position - first[window], _FAR)
    right = np.where(stop[window] < encoded.num_tokens, stop[window] - 1 - position, _FAR)
    # Sorted by position, then by most context first; lexsort is stable, so ties keep window order.
    order = np.lexsort((-np.minimum(left, right), position))
    sorted_positions = position[order]
    best = order[np.append(True, sorted_positions[1:] != sorted_positions[:-1])]
    rows = np.concatenate(
        [scores[offset : offset + n] for scores, n in zip(window_scores, lengths.tolist(), strict=True)]
    )
    merged: npt.NDArray[np.float32] = rows[best]
    return merged
