"""Scores rounded for a whole batch in one pass are exactly the floats ``round`` gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from worker.text.scores import round_scores

FLOAT32 = st.floats(0.0, 1.0, width=32)


@given(scores=st.lists(FLOAT32, max_size=50), digits=st.integers(-2, 16))
def test_rounded_in_one_pass_as_round_rounds_each(scores: list[float], digits: int) -> None:
    values = np.array(scores, dtype=np.float32)
    assert round_scores(values, digits) == [round(float(v), digits) for v in values]


def test_halves_and_near_halves_round_as_round_does() -> None:
    # Float32 values next to decimal halves at every digit count: the cases a scaled rint gets
    # wrong when the product is not exact.
    halves = [(2 * k + 1) / 2 / 10**digits for digits in range(1, 13) for k in (0, 1, 4, 12, 499)]
    near = np.array(halves, dtype=np.float32)
    values = np.concatenate([near, np.nextafter(near, np.float32(0)), np.nextafter(near, np.float32(1))])
    for digits in range(13):
        assert round_scores(values, digits) == [round(float(v), digits) for v in values]
