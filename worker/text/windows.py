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
    count = encoded.num_tokens
    first = np.asarray(encoded.window_starts, dtype=np.int64)
    stop = np.minimum(first + encoded.window_content, count)
    position = np.arange(count)
    # Windows start every ``step`` tokens, so the windows holding a token are a run of them:
    # from the first whose end is past it to the last that starts at or before it. Each run is
    # walked in window order (a few steps: as many as windows overlap), keeping the window with
    # the most context and, on ties, the earlier one; no sort.
    step = int(first[1] - first[0]) if len(first) > 1 else encoded.window_content
    low = np.maximum(0, -((encoded.window_content - 1 - position) // step))
    high = np.minimum(position // step, len(first) - 1)
    best = low
    best_context = _context(best, position, first, stop, count)
    for ahead in range(1, int((high - low).max()) + 1 if count else 0):
        window = np.minimum(low + ahead, high)
        context = _context(window, position, first, stop, count)
        better = context > best_context
        best = np.where(better, window, best)
        best_context = np.where(better, context, best_context)
    rows: npt.NDArray[np.intp] = (best * len(encoded.windows[0]) + encoded.content_offset + position
                                  - first[best]).astype(np.intp)
    return rows


def _context(window: npt.NDArray[np.int64], position: npt.NDArray[np.int64], first: npt.NDArray[np.int64],
             stop: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.int64]:
    """How far each token is from the nearest edge of ``window`` that cuts the document."""
    left = np.where(first[window] > 0, position - first[window], _FAR)
    right = np.where(stop[window] < count, stop[window] - 1 - position, _FAR)
    context: npt.NDArray[np.int64] = np.minimum(left, right)
    return context
