"""Engine scores to entities with exact character spans.

``EntityDecoder.decode_batch`` takes a batch of documents and their windows' scores and returns
each document's entities (``decode``: one document). The whole batch is decoded at once, in a few
vectorised passes over the concatenated tokens of all its documents (``batch``): windows are merged
per token (``windows``), tokens labelled, fused into words and grouped (``aggregate``); then every
span is cleaned (``finalize_spans``, the only loop, one step per entity) so that
``text[start:end] == entity["text"]``, spans are sorted, never overlap and never begin or end with
whitespace. docs/decoding.md states the rules and where they differ from the reference pipeline.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from worker.text.aggregate import (
    BEST_ONLY_STRATEGIES,
    WORD_STRATEGIES,
    ClassArray,
    kept_classes,
    spans_of_kept_tokens,
    spans_of_sequences,
)
from worker.text.batch import TokenBatch
from worker.text.characters import MAY_JOIN, SPACE, ZERO_WIDTH_JOINER, edge_flags
from worker.text.graphemes import whole_characters
from worker.text.kinds import Aggregation, ScoreKind
from worker.text.schemes import OUTSIDE, LabelScheme, LabelSchemeError, parse_scheme
from worker.text.scores import BestLabels, Stacked, WindowScores, round_scores, stack
from worker.text.tokenize import EncodedText

__all__ = ["Entity", "EntityDecoder", "LabelSchemeError"]

WindowMerge = Literal["context", "longest"]
WordRules = Literal["default", "pipeline"]
_STRATEGIES = ("none", "simple", "first", "average", "max")
_TOKEN_STRATEGIES = ("none", "simple")
# Which flags of the code points before a span, at its first, at its last and after it call for
# a close look (see finalize_spans).
_CAREFUL_FLAGS = np.array([ZERO_WIDTH_JOINER, SPACE | MAY_JOIN, SPACE | ZERO_WIDTH_JOINER, MAY_JOIN],
                          dtype=np.uint8)[:, None]


class Entity(TypedDict):
    label: str
    text: str
    start: int
    """Code point offset into the original text (inclusive)."""
    end: int
    """Code point offset into the original text (exclusive)."""
    score: float
    word_start: NotRequired[int]
    """Pre-split input only: index of the first given word the entity touches."""
    word_end: NotRequired[int]
    """Pre-split input only: index one past the last given word the entity touches."""


class EntityDecoder:
    def __init__(
        self,
        id2label: Mapping[int, str],
        *,
        aggregation: Aggregation = "simple",
        ignore_labels: Sequence[str] = (OUTSIDE,),
        scores: ScoreKind = "probabilities",
        window_merge: WindowMerge = "context",
        word_rules: WordRules = "default",
    ) -> None:
        """``window_merge="longest"`` and ``word_rules="pipeline"`` reproduce the reference pipeline
        where the defaults deliberately differ (docs/decoding.md): its entity-level merge of
        windows (the longest overlapping span wins) and its word-boundary tests."""
        _check_choice("aggregation", aggregation, _STRATEGIES)
        _check_choice("scores", scores, ("probabilities", "logits"))
        _check_choice("window_merge", window_merge, ("context", "longest"))
        _check_choice("word_rules", word_rules, ("default", "pipeline"))
        if isinstance(ignore_labels, str):
            raise ValueError("ignore_labels must be a sequence of labels, not one string")
        self.scheme: LabelScheme = parse_scheme(id2label, ignore_labels=ignore_labels)
        self.aggregation: Aggregation = aggregation
        self.ignore_labels = tuple(ignore_labels)
        self.scores: ScoreKind = scores
        self.window_merge: WindowMerge = window_merge
        self.word_rules: WordRules = word_rules
        ignored = set(ignore_labels)
        self._ignored_labels = np.array([label in ignored for label in self.scheme.labels], dtype=bool)
        self._ignored_types = np.array([name in ignored for name in self.scheme.types], dtype=bool)
        self._kept_classes = kept_classes(aggregation, self.scheme, self._ignored_labels, self._ignored_types)

    def decode(self, encoded: EncodedText, window_scores: Sequence[WindowScores]) -> list[Entity]:
        """Entities of one document, in text order. ``window_scores[i]`` scores ``encoded.windows[i]``."""
        (result,) = self.decode_batch([encoded], window_scores)
        if isinstance(result, ValueError):
            raise result
        return result

    def decode_batch(
        self, documents: Sequence[EncodedText], window_scores: Sequence[WindowScores], *,
        score_digits: int | None = None,
    ) -> list[list[Entity] | ValueError]:
        """Entities of each document, in text order, or the ``ValueError`` that says why its scores
        cannot be decoded (a caller or engine bug; the other documents are decoded all the same).
        ``window_scores`` scores every window of every document, in order. ``score_digits``:
        each score rounded as ``round(score, score_digits)`` rounds it (in one pass for the batch)."""
        windows = sum(len(doc.windows) for doc in documents)
        if len(window_scores) != windows:
            raise ValueError(f"{len(window_scores)} score matrices for {windows} windows")
        if not documents:
            return []
        problems = self._shape_problems(documents, window_scores)
        if any(problems):
            return self._decode_valid(documents, window_scores, problems, score_digits)
        stacked = stack(window_scores, logits=self.scores == "logits")
        labels = self.scheme.num_labels
        if stacked.problem(labels):  # one pass over the whole batch's scores; then find whose they are
            problems = [stacked.problem(labels, rows) for rows in _rows_by_document(documents)]
            return self._decode_valid(documents, window_scores, problems, score_digits)
        return list(self._decode(documents, stacked, score_digits))

    def _decode_valid(
        self, documents: Sequence[EncodedText], window_scores: Sequence[WindowScores], problems: list[str],
        score_digits: int | None,
    ) -> list[list[Entity] | ValueError]:
        """The documents without a problem decoded; the others get their problem as the error."""
        valid: list[int] = []
        valid_scores: list[WindowScores] = []
        position = 0
        for index, (doc, problem) in enumerate(zip(documents, problems, strict=True)):
            if not problem:
                valid.append(index)
                valid_scores.extend(window_scores[position : position + len(doc.windows)])
            position += len(doc.windows)
        results: list[list[Entity] | ValueError] = [ValueError(problem) for problem in problems]
        decoded = self.decode_batch([documents[i] for i in valid], valid_scores, score_digits=score_digits)
        for index, entities in zip(valid, decoded, strict=True):
            results[index] = entities
        return results

    def _decode(self, documents: Sequence[EncodedText], stacked: Stacked,
                score_digits: int | None) -> list[list[Entity]]:
        batch = TokenBatch.of(documents, per_window=self._per_window)
        if self.aggregation in _TOKEN_STRATEGIES and batch.one_window_each:
            # The common case: the few tokens of kept classes, straight from the stacked rows.
            best = stacked.best
            if best is None:
                assert stacked.rows is not None
                best = BestLabels.of(stacked.rows)
            kept = batch.kept_tokens(best, self._kept_classes)
            spans = spans_of_kept_tokens(kept.tokens, kept.classes, kept.scores, kept.opens,
                                         strategy=self.aggregation, scheme=self.scheme)
        else:
            starts_of_words = None
            if self.aggregation in WORD_STRATEGIES:
                starts_of_words = batch.word_starts(pipeline_rules=self.word_rules == "pipeline")
            spans = spans_of_sequences(
                batch.token_scores(stacked),
                batch.sequence_start,
                starts_of_words,
                strategy=self.aggregation,
                scheme=self.scheme,
                ignored_labels=self._ignored_labels,
                ignored_types=self._ignored_types,
            )
        found = Found(spans.classes, spans.scores, *batch.character_spans(spans.first_tokens, spans.last_tokens))
        if batch.windowed_documents:
            found = found.take(longest_of_overlapping(found, batch.windowed_documents))
        names = self.scheme.labels if self.aggregation == "none" else self.scheme.types
        return finalize_spans(batch, found, names, score_digits)

    def _per_window(self, encoded: EncodedText) -> bool:
        """The reference pipeline's stride merge: each window decoded alone (see
        ``longest_of_overlapping``)."""
        return self.window_merge == "longest" and len(encoded.windows) > 1 and self.aggregation != "none"

    def _shape_problems(self, documents: Sequence[EncodedText], window_scores: Sequence[WindowScores]) -> list[str]:
        """Why each document's scores cannot belong to it ("" when they can)."""
        labels = self.scheme.num_labels
        best_only = self.aggregation in BEST_ONLY_STRATEGIES
        sizes = [len(window) for doc in documents for window in doc.windows]
        if all(scores.classes.shape == (size,) if isinstance(scores, BestLabels) else scores.shape == (size, labels)
               for scores, size in zip(window_scores, sizes, strict=True)) and (
                best_only or not any(isinstance(scores, BestLabels) for scores in window_scores)):
            return [""] * len(documents)  # the common case, in one pass
        problems: list[str] = []
        scores = iter(window_scores)
        for doc in documents:
            problem = ""
            for window in doc.windows:
                problem = _shape_problem(next(scores), len(window), labels, best_only=best_only) or problem
            problems.append(problem)
        return problems


def _rows_by_document(documents: Sequence[EncodedText]) -> list[slice]:
    """Each document's rows in its batch's stacked window scores."""
    slices = []
    row = 0
    for doc in documents:
        rows = sum(len(window) for window in doc.windows)
        slices.append(slice(row, row + rows))
        row += rows
    return slices


@dataclass(frozen=True, slots=True)
class Found:
    """Spans placed in their documents' texts (offsets not yet cleaned)."""

    classes: ClassArray
    scores: npt.NDArray[np.float32]
    documents: npt.NDArray[np.intp]
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.classes)

    def take(self, index: npt.NDArray[np.intp]) -> Found:
        return Found(self.classes[index], self.scores[index], self.documents[index], self.starts[index],
                     self.ends[index])


def longest_of_overlapping(found: Found, windowed: Collection[int]) -> npt.NDArray[np.intp]:
    """The reference pipeline's stride merge, for the ``windowed`` documents, whose windows were
    decoded as separate sequences: of overlapping entities the longest is kept (ties: the higher
    score). Returns the kept spans' indices, each document's in text order."""
    columns = found.documents.tolist(), found.starts.tolist(), found.ends.tolist(), found.scores.tolist()
    by_document: dict[int, list[tuple[int, int, float, int]]] = {}
    for index, (document, start, end, score) in enumerate(zip(*columns, strict=True)):
        by_document.setdefault(document, []).append((start, end, score, index))
    kept_all: list[int] = []
    for document in sorted(by_document):
        if document not in windowed:
            kept_all.extend(span[3] for span in by_document[document])
            continue
        kept: list[tuple[int, int, float, int]] = []
        for span in sorted(by_document[document], key=lambda span: span[0]):
            if not kept:
                kept.append(span)
                continue
            previous = kept[-1]
            if previous[0] <= span[0] < previous[1]:
                length, previous_length = span[1] - span[0], previous[1] - previous[0]
                if length > previous_length or (length == previous_length and span[2] > previous[2]):
                    kept[-1] = span
            else:
                kept.append(span)
        kept_all.extend(span[3] for span in kept)
    return np.array(kept_all, dtype=np.intp)


def finalize_spans(batch: TokenBatch, found: Found, names: Sequence[str],
                   score_digits: int | None = None) -> list[list[Entity]]:
    """Each document's entities with clean spans, in this order: a span is widened so that it
    never separates a character from the marks joined to it (``graphemes``), an entity that would
    overlap the previous one starts where that one ends (two byte-level pieces of one character
    can carry different labels), whitespace is trimmed from both ends, and spans left empty are
    dropped."""
    texts = batch.texts
    results: list[list[Entity]] = [[] for _ in texts]
    if not len(found):
        return results
    starts, ends = found.starts, found.ends
    # Most spans need none of the above: find, in one pass over all documents, those that might.
    # The batch's code points keep a 0 (not a space, not a joiner) before and after every text.
    # The code points before the span, its first, its last and the one after it, in one lookup:
    # a joiner before, whitespace or a possible joiner first, whitespace or a joiner last, or a
    # possible joiner after makes the span one to look at closely.
    base = batch.text_base[found.documents]
    at_start, at_end = base + starts, base + ends
    flags = edge_flags(batch.points[np.concatenate((at_start - 1, at_start, at_end - 1, at_end))])
    careful = (flags.reshape(4, -1) & _CAREFUL_FLAGS).any(axis=0) | (ends <= starts)
    labels = [names[c] for c in found.classes.tolist()]
    scores = found.scores.tolist() if score_digits is None else round_scores(found.scores, score_digits)
    columns = found.documents.tolist(), labels, scores, starts.tolist(), ends.tolist(), careful.tolist()
    previous_document, previous_end, text, entities = -1, 0, "", results[0]
    for document, label, score, start, end, slow in zip(*columns, strict=True):
        if document != previous_document:
            previous_document, previous_end, text, entities = document, 0, texts[document], results[document]
        if slow or start < previous_end:
            start, end = whole_characters(text, start, end)
            start = max(start, previous_end)
            if end <= start:
                continue
            piece = text[start:end]
            stripped = piece.strip()
            if not stripped:
                continue
            start += len(piece) - len(piece.lstrip())
            end = start + len(stripped)
        entities.append({"label": label, "text": text[start:end], "start": start, "end": end, "score": score})
        previous_end = end
    return results


def _shape_problem(scores: WindowScores, tokens: int, labels: int, *, best_only: bool) -> str:
    if isinstance(scores, BestLabels):
        if not best_only:
            return "the engine returned best labels only, but this aggregation needs every label's score"
        if len(scores) != tokens:
            return f"best labels of {len(scores)} tokens for a window of {tokens} tokens"
        return ""
    if scores.shape != (tokens, labels):
        return f"scores of shape {scores.shape} for a window of {tokens} tokens and {labels} labels"
    return ""


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(choices)}")
