"""Each token's scores come from the window where it has the most context (the earlier on ties)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.text.tokenize import EncodedText
from worker.text.windows import merged_rows


def _reference(starts: tuple[int, ...], content: int, count: int, width: int, offset: int) -> list[int]:
    """Window by window, token by token: the plain reading of the rule."""
    rows = []
    for position in range(count):
        best, best_context = -1, -1
        for window, first in enumerate(starts):
            stop = min(first + content, count)
            if not first <= position < stop:
                continue
            left = position - first if first > 0 else count + 1
            right = stop - 1 - position if stop < count else count + 1
            if min(left, right) > best_context:
                best, best_context = window, min(left, right)
        rows.append(best * width + offset + position - starts[best])
    return rows


@given(content=st.integers(1, 40), stride_share=st.floats(0, 0.99), count=st.integers(2, 200),
       prefix=st.integers(0, 2), suffix=st.integers(0, 2))
def test_merged_rows_follow_the_most_context_rule(content: int, stride_share: float, count: int, prefix: int,
                                                   suffix: int) -> None:
    step = content - int(stride_share * content)
    last = -(-max(count - content, 0) // step)
    starts = tuple(range(0, last * step + 1, step))
    windows = [[0] * prefix + [1] * (min(first + content, count) - first) + [0] * suffix for first in starts]
    document = EncodedText("", windows, count, starts, content, prefix, None, None, [1] * count)  # type: ignore[arg-type]
    assert merged_rows(document).tolist() == _reference(starts, content, count, len(windows[0]), prefix)
