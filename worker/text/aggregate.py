"""Per-token scores of many token sequences to entity spans, in a few vectorised passes.

A batch's sequences (one per document, or one per window in the pipeline's stride merge) are
concatenated; ``sequence_start`` marks where each begins. Every pass below runs once over
the whole batch, and a sequence start always opens a new word and a new entity, so nothing
crosses from one sequence into the next.

Strategies follow the Hugging Face ``TokenClassificationPipeline``:

- ``none``: every token is its own item, labelled with its full label (``B-PER``).
- ``simple``: tokens are labelled by their argmax, then grouped (``LabelScheme.continues``).
- ``first`` / ``average`` / ``max``: tokens are first fused into words, each word labelled by its
  first token's argmax, by the argmax of the mean of its tokens' score vectors, or by the argmax of
  its most confident token (the first one on ties); then words are grouped like tokens.

An item's score is its argmax probability; a group's score is the mean of its items' scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.text.kinds import Aggregation
from worker.text.schemes import LabelScheme

WORD_STRATEGIES = frozenset({"first", "average", "max"})
BEST_ONLY_STRATEGIES = frozenset({"none", "simple", "first"})
"""Strategies that need no more than each token's best label and its probability."""

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]
ClassArray = npt.NDArray[np.integer[Any]]
"""Class ids, in the engine's type (often uint8): they only index lookups."""
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Spans:
    """Candidate entities in text order, as parallel arrays of the batch's token indices."""

    classes: ClassArray
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

    classes: ClassArray
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
    sequence_start: BoolArray,
    word_start: BoolArray | None,
    *,
    strategy: Aggregation,
    scheme: LabelScheme,
    ignored_labels: BoolArray,
    ignored_types: BoolArray,
) -> Spans:
    """Entities of concatenated sequences of (non-special) tokens.

    ``sequence_start`` marks each sequence's first token; ``word_start`` marks tokens that begin a
    word (needed by the word strategies only). ``ignored_labels``/``ignored_types`` are lookups
    by class id / type id: ``none`` filters on the full label, the grouping strategies on the
    entity type (the reference pipeline's rule).
    """
    count = len(tokens.classes)
    if count == 0:
        return _no_spans()
    if strategy not in WORD_STRATEGIES:
        kept = np.flatnonzero(kept_classes(strategy, scheme, ignored_labels, ignored_types)[tokens.classes])
        return spans_of_kept_tokens(kept, tokens.classes[kept], tokens.scores[kept], sequence_start[kept],
                                    strategy=strategy, scheme=scheme)
    if word_start is None:
        raise ValueError(f"aggregation {strategy!r} needs word boundaries")
    words = word_start | sequence_start  # a sequence (or window) always opens a word, as in the pipeline
    firsts = np.flatnonzero(words)
    lasts = np.append(firsts[1:] - 1, count - 1)
    classes, scores = _fuse_words(tokens, words, firsts, strategy)
    kept = np.flatnonzero(~ignored_types[scheme.type_of][classes])
    spans = _group(kept, classes[kept], scores[kept], sequence_start[firsts][kept], scheme)
    return Spans(spans.classes, spans.scores, firsts[spans.first_tokens], lasts[spans.last_tokens])


def kept_classes(strategy: Aggregation, scheme: LabelScheme, ignored_labels: BoolArray,
                 ignored_types: BoolArray) -> BoolArray:
    """By class id: whether a token of that class can be part of an entity (``none`` filters on
    the full label, the grouping strategies on the entity type)."""
    kept: BoolArray = ~ignored_labels if strategy == "none" else ~ignored_types[scheme.type_of]
    return kept


def spans_of_kept_tokens(tokens: IndexArray, classes: ClassArray, scores: FloatArray, opens: BoolArray, *,
                         strategy: Aggregation, scheme: LabelScheme) -> Spans:
    """Entities of the token-level strategies (``none``, ``simple``) from the tokens of kept
    classes alone (``kept_classes``), in order, each with its class, score and whether it is the
    first of its sequence: the others never reach an entity and never join one."""
    if strategy == "none":
        return Spans(classes, scores, tokens, tokens)
    return _group(tokens, classes, scores, opens, scheme)


def _fuse_words(
    tokens: TokenScores, word_start: BoolArray, firsts: IndexArray, strategy: Aggregation
) -> tuple[ClassArray, FloatArray]:
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


def _group(items: IndexArray, classes: ClassArray, scores: FloatArray, opens: BoolArray, scheme: LabelScheme) -> Spans:
    """Items (tokens or words) of kept types, in order, grouped into entities; ``opens`` marks
    items that always open a group. An item of an ignored type always differs in type from its
    neighbours of a kept type, so the kept items are all there is to look at: a kept item opens
    a group unless it comes right after a kept item whose group its class continues
    (``LabelScheme.continues``). Returns the groups' first and last items."""
    if not len(items):
        return _no_spans()
    starts = opens.copy()
    if len(items) > 1:
        starts[1:] |= (items[1:] != items[:-1] + 1) | ~scheme.continues[classes[:-1], classes[1:]]
    starts[0] = True
    firsts = np.flatnonzero(starts)
    lasts = np.append(firsts[1:] - 1, len(items) - 1)
    sizes = np.diff(np.append(firsts, len(items))).astype(np.float32)
    means = (np.add.reduceat(scores, firsts) / sizes).astype(np.float32)
    return Spans(scheme.type_of[classes[firsts]].astype(np.intp), means, items[firsts], items[lasts])


def _no_spans() -> Spans:
    empty = np.zeros(0, np.intp)
    return Spans(empty, np.zeros(0, np.float32), empty, empty)
