"""Engine scores to entities with exact character spans.

``EntityDecoder.decode`` takes one document's windows' score matrices and returns its entities:
windows are merged per token (``windows``), tokens labelled, fused into
words and grouped (``aggregate``), then every span is cleaned (``finalize_spans``) so that
``text[start:end] == entity["text"]``, spans are sorted, never overlap and never begin or end with
whitespace. docs/decoding.md states the rules and where they differ from the reference pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

from bench._legacy_text.aggregate import WORD_STRATEGIES, Aggregation, Spans, softmax, spans_of_sequence
from bench._legacy_text.characters import code_points, is_space
from bench._legacy_text.graphemes import FIRST_JOINER as _FIRST_JOINER
from bench._legacy_text.graphemes import ZWJ as _ZWJ
from bench._legacy_text.graphemes import whole_characters
from bench._legacy_text.schemes import OUTSIDE, LabelScheme, LabelSchemeError, parse_scheme
from bench._legacy_text.tokenize import EncodedText
from bench._legacy_text.windows import document_scores
from bench._legacy_text.words import word_starts

__all__ = ["Entity", "EntityDecoder", "LabelSchemeError"]

ScoreKind = Literal["probabilities", "logits"]
WindowMerge = Literal["context", "longest"]
WordRules = Literal["default", "pipeline"]
_STRATEGIES = ("none", "simple", "first", "average", "max")


class Entity(TypedDict):
    label: str
    text: str
    start: int
    """Code point offset into the original text (inclusive)."""
    end: int
    """Code point offset into the original text (exclusive)."""
    score: float


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

    def decode(self, encoded: EncodedText, window_scores: Sequence[npt.NDArray[np.float32]]) -> list[Entity]:
        """Entities of one document, in text order. ``window_scores[i]`` scores ``encoded.windows[i]``."""
        self._check(encoded, window_scores)
        if self.window_merge == "longest" and len(window_scores) > 1 and self.aggregation != "none":
            spans = self._spans_per_window(encoded, window_scores)
        else:
            scores = document_scores(encoded, window_scores)
            spans = self._spans(encoded, np.arange(encoded.num_tokens), scores)
        return finalize_spans(encoded.text, spans)

    def _spans(self, encoded: EncodedText, tokens: npt.NDArray[np.intp], scores: npt.NDArray[np.float32]) -> Spans:
        scores = np.asarray(scores, dtype=np.float32)
        if self.scores == "logits":
            scores = softmax(scores)
        starts_of_words = None
        if self.aggregation in WORD_STRATEGIES:
            starts_of_words = word_starts(encoded, tokens, pipeline_rules=self.word_rules == "pipeline")
        return spans_of_sequence(
            scores,
            encoded.starts[tokens],
            encoded.ends[tokens],
            starts_of_words,
            strategy=self.aggregation,
            scheme=self.scheme,
            ignored_labels=self._ignored_labels,
            ignored_types=self._ignored_types,
        )

    def _spans_per_window(self, encoded: EncodedText, window_scores: Sequence[npt.NDArray[np.float32]]) -> Spans:
        """The reference pipeline's stride merge: decode each window alone, then keep the longest
        of overlapping entities (ties: the higher score)."""
        found: list[tuple[int, int, float, str]] = []
        for index, scores in enumerate(window_scores):
            start, stop = encoded.window_range(index)
            rows = scores[encoded.content_offset : encoded.content_offset + stop - start]
            spans = self._spans(encoded, np.arange(start, stop), rows)
            found.extend(
                zip(spans.starts.tolist(), spans.ends.tolist(), spans.scores.tolist(), spans.labels, strict=True)
            )
        found.sort(key=lambda span: span[0])
        kept: list[tuple[int, int, float, str]] = []
        for span in found:
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
        return Spans(
            [span[3] for span in kept],
            np.array([span[2] for span in kept], dtype=np.float32),
            np.array([span[0] for span in kept], dtype=np.int32),
            np.array([span[1] for span in kept], dtype=np.int32),
        )

    def _check(self, encoded: EncodedText, window_scores: Sequence[npt.NDArray[np.float32]]) -> None:
        """Refuse scores that cannot belong to this document (a caller or engine bug): a
        ``ValueError`` rather than entities made up from them."""
        if len(window_scores) != len(encoded.windows):
            raise ValueError(f"{len(window_scores)} score matrices for {len(encoded.windows)} windows")
        for window, scores in zip(encoded.windows, window_scores, strict=True):
            if scores.shape != (len(window), self.scheme.num_labels):
                raise ValueError(
                    f"scores of shape {scores.shape} for a window of {len(window)} tokens "
                    f"and {self.scheme.num_labels} labels"
                )
            if np.isnan(scores).any():
                raise ValueError("the engine returned NaN scores")


def finalize_spans(text: str, spans: Spans) -> list[Entity]:
    """Entities with clean spans, in this order: a span is widened so that it never separates a
    character from the marks joined to it (``graphemes``), an entity that would overlap the
    previous one starts where that one ends (two byte-level pieces of one character can carry
    different labels), whitespace is trimmed from both ends, and spans left empty are dropped."""
    if not len(spans):
        return []
    starts, ends = spans.starts.astype(np.int64), spans.ends.astype(np.int64)
    # Most spans need none of the above: find, in one pass, those that might.
    points = np.append(code_points(text), np.uint32(0))  # index len(text) (and -1) read as 0
    first, last, after = points[starts], points[ends - 1], points[np.minimum(ends, len(text))]
    joiner_near = (first >= _FIRST_JOINER) | (after >= _FIRST_JOINER) | (points[starts - 1] == _ZWJ) | (last == _ZWJ)
    careful = (ends <= starts) | joiner_near | is_space(first) | is_space(last)
    entities: list[Entity] = []
    previous_end = 0
    columns = spans.labels, spans.scores.tolist(), starts.tolist(), ends.tolist(), careful.tolist()
    for label, score, start, end, slow in zip(*columns, strict=True):
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
    return entities


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {', '.join(choices)}")
