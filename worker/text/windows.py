"""Merging the score matrices of overlapping windows back into one row per token.

Each content token takes its scores from the window in which it has the most context: the
largest distance to a window edge that cuts the document (the document's own start and end are
not cuts). Ties go to the earlier window. Inside an overlap of ``stride`` tokens this splits the
overlap in the middle: the first half keeps the left window's scores, the second half the right's.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from worker.text.tokenize import EncodedText

_FAR = np.iinfo(np.int64).max // 2


def merged_rows(encoded: EncodedText) -> npt.NDArray[np.intp]:
    """For each content token of the document, its row in the document's window score matrices
    stacked in window order (window ``k`` starts at row ``k * len(window)``)."""
    offset = encoded.content_offset
    width = len(encoded.windows[0])
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
    rows: npt.NDArray[np.intp] = (window[best] * width + offset + position[best] - first[window[best]]).astype(np.intp)
    return rows
