"""What an engine answers for one window: every label's score, or each token's best label only.

Strategies ``none``, ``simple`` and ``first`` read nothing but each token's best label and its
probability, so an engine may answer with ``BestLabels`` (5–6 bytes per token) instead of the
full ``[tokens, labels]`` float32 matrix (4 bytes per label per token); ``average`` and ``max``
need the full matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_Scalar = TypeVar("_Scalar", bound=np.generic)


@dataclass(frozen=True, slots=True)
class BestLabels:
    """Each token's best class id and its probability (softmax, never a logit)."""

    classes: npt.NDArray[np.integer[Any]]
    scores: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.classes)

    @staticmethod
    def of(probabilities: npt.NDArray[np.float32]) -> BestLabels:
        """The best label of each row of a probability matrix."""
        classes = probabilities.argmax(axis=1)
        return BestLabels(classes, np.take_along_axis(probabilities, classes[:, None], axis=1)[:, 0])


WindowScores = npt.NDArray[np.float32] | BestLabels
"""``[len(window), num_labels]`` float32 scores, or ``BestLabels`` of ``len(window)`` tokens."""


@dataclass(frozen=True, slots=True)
class Stacked:
    """A batch's window scores stacked in one array: probability rows, or best labels."""

    rows: npt.NDArray[np.float32] | None
    best: BestLabels | None

    def problem(self, num_labels: int, rows: slice = slice(None)) -> str:
        """Why these rows cannot be decoded: NaN scores, or best labels that are no class."""
        # A minimum is NaN exactly where some value is: one reduction, no array of flags.
        if self.rows is not None:
            return "the engine returned NaN scores" if _any_nan(self.rows[rows]) else ""
        assert self.best is not None
        if _any_nan(self.best.scores[rows]):
            return "the engine returned NaN scores"
        classes = self.best.classes[rows]
        if len(classes):
            lowest = 0 if classes.dtype.kind == "u" else int(classes.min())  # unsigned ids are never negative
            if lowest < 0 or int(classes.max()) >= num_labels:
                return f"best labels outside 0..{num_labels - 1}"
        return ""


def _any_nan(values: npt.NDArray[np.float32]) -> bool:
    return bool(values.size) and bool(np.isnan(values.min()))


def stack(window_scores: Sequence[WindowScores], *, logits: bool) -> Stacked:
    """One array for all windows (one copy); logits become probabilities. Matrices among best
    labels (an engine that answered both ways) are reduced to their best labels."""
    matrices = [scores for scores in window_scores if not isinstance(scores, BestLabels)]
    if len(matrices) == len(window_scores):
        rows = concatenate(matrices, np.float32)
        return Stacked(softmax(rows) if logits else rows, None)
    best = [s if isinstance(s, BestLabels) else BestLabels.of(softmax(s) if logits else s) for s in window_scores]
    # Class ids keep the engine's narrow type (uint8 for most models): they only index lookups.
    classes = concatenate([b.classes for b in best], np.intp)
    return Stacked(None, BestLabels(classes, concatenate([b.scores for b in best], np.float32)))


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Row softmax with the max shift, as the reference pipeline computes it (float32)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: npt.NDArray[np.float32] = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def round_scores(scores: npt.NDArray[np.float32], digits: int) -> list[float]:
    """``[round(float(score), digits) for score in scores]``, in one pass where that gives the
    very same floats: a float32 times ``10**digits`` (at most 29 bits for ``digits`` <= 12) is
    exact in float64, so ``rint`` rounds the exact value half to even, as ``round`` does; and
    the integer over ``10**digits`` is correctly rounded, as ``round``'s result is the double
    nearest its decimal."""
    if scores.dtype != np.float32 or not 0 <= digits <= _EXACT_DIGITS:
        return [round(score, digits) for score in scores.tolist()]
    scale = 10.0**digits
    rounded: list[float] = (np.rint(scores.astype(np.float64) * scale) / scale).tolist()
    return rounded


_EXACT_DIGITS = 12


def concatenate(parts: Sequence[npt.NDArray[Any]], dtype: type[_Scalar]) -> npt.NDArray[_Scalar]:
    if not parts:
        return np.zeros(0, dtype=dtype)
    joined: npt.NDArray[_Scalar] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return joined
