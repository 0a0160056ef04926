"""Per-token scores of one token sequence to entity spans, vectorised.

Strategies follow the Hugging Face ``TokenClassificationPipeline``:

- ``none``: every token is its own item, labelled with its full label (``B-PER``).
- ``simple``: tokens are labelled by their argmax, then grouped (``schemes.starts_group``).
- ``first`` / ``average`` / ``max``: tokens are first fused into words, each word labelled by its
  first token's argmax, by the argmax of the mean of its tokens' score vectors, or by the argmax of
  its most confident token (the first one on ties); then words are grouped like tokens.

An item's score is its argmax probability; a group's score is the mean of its items' scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from bench._legacy_text.schemes import LabelScheme, starts_group

Aggregation = Literal["none", "simple", "first", "average", "max"]
WORD_STRATEGIES = frozenset({"first", "average", "max"})

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Spans:
    """Candidate entities in text order, as parallel arrays (offsets not yet trimmed)."""

    labels: list[str]
    scores: FloatArray
    starts: IntArray
    ends: IntArray

    @staticmethod
    def empty() -> Spans:
        return Spans([], np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.labels)


def softmax(logits: FloatArray) -> FloatArray:
    """Row softmax with the max shift, as the reference pipeline computes it (float32)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: FloatArray = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def spans_of_sequence(
    probs: FloatArray,
    starts: IntArray,
    ends: IntArray,
    word_start: BoolArray | None,
    *,
    strategy: Aggregation,
    scheme: LabelScheme,
    ignored_labels: BoolArray,
    ignored_types: BoolArray,
) -> Spans:
    """Entities of one sequence of (non-special) tokens with probabilities ``probs[n, labels]``.

    ``word_start`` marks tokens that begin a word (needed by the word strategies only).
    ``ignored_labels``/``ignored_types`` are lookups by class id / type id: ``none`` filters on
    the full label, the grouping strategies on the entity type (the reference pipeline's rule).
    """
    count = len(probs)
    if count == 0:
        return Spans.empty()
    classes = probs.argmax(axis=1)
    scores = np.take_along_axis(probs, classes[:, None], axis=1)[:, 0]
    if strategy == "none":
        keep = np.flatnonzero(~ignored_labels[classes])
        return Spans([scheme.labels[c] for c in classes[keep].tolist()], scores[keep], starts[keep], ends[keep])
    if strategy in WORD_STRATEGIES:
        if word_start is None:
            raise ValueError(f"aggregation {strategy!r} needs word boundaries")
        classes, scores, starts, ends = _fuse_words(probs, classes, scores, starts, ends, word_start, strategy)
    return _group(classes, scores, starts, ends, scheme, ignored_types)


def _fuse_words(
    probs: FloatArray,
    classes: npt.NDArray[np.intp],
    scores: FloatArray,
    starts: IntArray,
    ends: IntArray,
    word_start: BoolArray,
    strategy: Aggregation,
) -> tuple[npt.NDArray[np.intp], FloatArray, IntArray, IntArray]:
    count = len(probs)
    word_start = word_start.copy()
    word_start[0] = True  # a sequence (or window) always opens a word, as in the pipeline
    firsts = np.flatnonzero(word_start)
    lasts = np.append(firsts[1:] - 1, count - 1)
    if strategy == "first":
        chosen = firsts
    elif strategy == "max":
        word_of = np.cumsum(word_start) - 1
        best = np.maximum.reduceat(scores, firsts)
        hits = np.flatnonzero(scores == best[word_of])
        # The first token reaching the word's best score (Python's max() keeps the first).
        chosen = hits[np.append(True, word_of[hits][1:] != word_of[hits][:-1])]
    else:  # average
        sizes = np.diff(np.append(firsts, count)).astype(np.float32)
        means = np.add.reduceat(probs, firsts, axis=0) / sizes[:, None]
        word_classes = means.argmax(axis=1)
        word_scores = np.take_along_axis(means, word_classes[:, None], axis=1)[:, 0]
        return word_classes, word_scores.astype(np.float32), starts[firsts], ends[lasts]
    return classes[chosen], scores[chosen], starts[firsts], ends[lasts]


def _group(
    classes: npt.NDArray[np.intp],
    scores: FloatArray,
    starts: IntArray,
    ends: IntArray,
    scheme: LabelScheme,
    ignored_types: BoolArray,
) -> Spans:
    count = len(classes)
    firsts = np.flatnonzero(starts_group(scheme, classes))
    types = scheme.type_of[classes[firsts]]
    keep = ~ignored_types[types]
    if not keep.any():
        return Spans.empty()
    lasts = np.append(firsts[1:] - 1, count - 1)
    sizes = np.diff(np.append(firsts, count)).astype(np.float32)
    means = (np.add.reduceat(scores, firsts) / sizes).astype(np.float32)
    return Spans(
        [scheme.types[t] for t in types[keep].tolist()],
        means[keep],
        starts[firsts[keep]],
        ends[lasts[keep]],
    )
