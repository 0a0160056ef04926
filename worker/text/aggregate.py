"""Per-token scores of many token sequences to entity spans, in a few vectorised passes.

A batch's sequences (one per document, or one per window in the pipeline's stride merge) are
concatenated; ``sequence_of`` says which sequence each token belongs to. Every pass below runs once over
the whole batch, and a sequence start always opens a new word and a new entity, so nothing
crosses from one sequence into the next.

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

import numpy as np
import numpy.typing as npt

from worker.text.kinds import Aggregation
from worker.text.schemes import LabelScheme, starts_group

WORD_STRATEGIES = frozenset({"first", "average", "max"})
BEST_ONLY_STRATEGIES = frozenset({"none", "simple", "first"})
"""Strategies that need no more than each token's best label and its probability."""

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Spans:
    """Candidate entities in text order, as parallel arrays of the batch's token indices."""

    classes: IndexArray
    """Class id (``none``) or entity type id (the grouping strategies) of each span."""
    scores: FloatArray
    first_tokens: IndexArray
    last_tokens: IndexArray
    """The span's first and last token (inclusive), indices into the concatenated sequences."""

    def __len__(self) -> int:
        return len(self.classes)


@dataclass(frozen=True, slots=True)
class TokenScores:
    """Each token's best class and its probability, with the full rows where a strategy needs them."""

    classes: IndexArray
    scores: FloatArray
    rows: FloatArray | None = None
    """``[tokens, labels]`` probabilities (``average`` and ``max`` only)."""

    @staticmethod
    def of(probabilities: FloatArray) -> TokenScores:
        classes = probabilities.argmax(axis=1)
        scores = np.take_along_axis(probabilities, classes[:, None], axis=1)[:, 0]
        return TokenScores(classes, scores, probabilities)


def spans_of_sequences(
    tokens: TokenScores,
    sequence_of: IndexArray,
    word_start: BoolArray | None,
    *,
    strategy: Aggregation,
    scheme: LabelScheme,
    ignored_labels: BoolArray,
    ignored_types: BoolArray,
) -> Spans:
    """Entities of concatenated sequences of (non-special) tokens.

    ``sequence_of`` numbers each token's sequence (non-decreasing); ``word_start`` marks tokens that
    begin a word (needed by the word strategies only). ``ignored_labels``/``ignored_types`` are
    lookups by class id / type id: ``none`` filters on the full label, the grouping strategies on
    the entity type (the reference pipeline's rule).
    """
    count = len(tokens.classes)
    if count == 0:
        return _no_spans()
    sequence_start = np.ones(count, dtype=bool)
    sequence_start[1:] = sequence_of[1:] != sequence_of[:-1]
    if strategy == "none":
        keep = np.flatnonzero(~ignored_labels[tokens.classes])
        return Spans(tokens.classes[keep], tokens.scores[keep], keep, keep)
    if strategy not in WORD_STRATEGIES:
        every = np.arange(count)
        return _group(tokens.classes, tokens.scores, every, every, sequence_start, scheme, ignored_types)
    if word_start is None:
        raise ValueError(f"aggregation {strategy!r} needs word boundaries")
    words = word_start | sequence_start  # a sequence (or window) always opens a word, as in the pipeline
    firsts = np.flatnonzero(words)
    lasts = np.append(firsts[1:] - 1, count - 1)
    classes, scores = _fuse_words(tokens, words, firsts, strategy)
    return _group(classes, scores, firsts, lasts, sequence_start[firsts], scheme, ignored_types)


def _fuse_words(
    tokens: TokenScores, word_start: BoolArray, firsts: IndexArray, strategy: Aggregation
) -> tuple[IndexArray, FloatArray]:
    if strategy == "first":
        return tokens.classes[firsts], tokens.scores[firsts]
    if tokens.rows is None:
        raise ValueError(f"aggregation {strategy!r} needs every label's score")
    if strategy == "max":
        word_of = np.cumsum(word_start) - 1
        best = np.maximum.reduceat(tokens.scores, firsts)
        hits = np.flatnonzero(tokens.scores == best[word_of])
        # The first token reaching the word's best score (Python's max() keeps the first).
        chosen = hits[np.append(True, word_of[hits][1:] != word_of[hits][:-1])]
        return tokens.classes[chosen], tokens.scores[chosen]
    # average
    sizes = np.diff(np.append(firsts, len(word_start))).astype(np.float32)
    means = np.add.reduceat(tokens.rows, firsts, axis=0) / sizes[:, None]
    word_classes = means.argmax(axis=1)
    word_scores = np.take_along_axis(means, word_classes[:, None], axis=1)[:, 0]
    return word_classes, word_scores.astype(np.float32)


def _group(
    classes: IndexArray,
    scores: FloatArray,
    first_tokens: IndexArray,
    last_tokens: IndexArray,
    opens: BoolArray,
    scheme: LabelScheme,
    ignored_types: BoolArray,
) -> Spans:
    """Items (tokens or words, each from its first to its last token) grouped into entities."""
    count = len(classes)
    firsts = np.flatnonzero(starts_group(scheme, classes) | opens)
    types = scheme.type_of[classes[firsts]]
    keep = ~ignored_types[types]
    if not keep.any():
        return _no_spans()
    lasts = np.append(firsts[1:] - 1, count - 1)
    sizes = np.diff(np.append(firsts, count)).astype(np.float32)
    means = (np.add.reduceat(scores, firsts) / sizes).astype(np.float32)
    return Spans(types[keep].astype(np.intp), means[keep], first_tokens[firsts[keep]], last_tokens[lasts[keep]])


def _no_spans() -> Spans:
    empty = np.zeros(0, np.intp)
    return Spans(empty, np.zeros(0, np.float32), empty, empty)
