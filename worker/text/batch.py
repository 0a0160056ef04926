"""A batch of documents as flat arrays over all their tokens, for decoding in a few passes.

Each document is one *sequence* of content tokens (its windows' scores merged per token, see
``windows``), or, in the reference pipeline's stride merge, one sequence per window. The
sequences' tokens are concatenated; ``rows`` says where each token's scores sit in the
concatenated window score matrices, so that one gather (and one softmax, one argmax) serves the
whole batch. Python loops here run per document or per window, never per token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from worker.text.aggregate import FloatArray, IndexArray, IntArray, TokenScores, softmax
from worker.text.characters import code_points
from worker.text.scores import BestLabels, WindowScores
from worker.text.tokenize import EncodedText
from worker.text.windows import merged_rows
from worker.text.words import word_starts

_Scalar = TypeVar("_Scalar", bound=np.generic)
_SEPARATOR = "\0"  # between texts, so that a read just outside any text finds 0: not a space, not a joiner


@dataclass(frozen=True, slots=True, eq=False)
class TokenBatch:
    documents: Sequence[EncodedText]
    window_scores: Sequence[WindowScores]
    texts: list[str]
    points: npt.NDArray[np.uint32]
    """Code points of all texts, each preceded and followed by a 0."""
    text_base: npt.NDArray[np.int64]
    """Index in ``points`` of each text's first character."""
    sequences: list[tuple[int, int, int]]
    """(document, first token, stop token) of each sequence."""
    document_of_sequence: IndexArray
    sequence_of: IndexArray
    """Per token of the batch: the index of its sequence."""
    starts: IntArray
    ends: IntArray
    """Per token: code point offsets into its own text."""
    rows: IndexArray
    """Per token: its row in the window score matrices stacked in order."""
    windows_as_sequences: bool

    @staticmethod
    def of(
        documents: Sequence[EncodedText],
        window_scores: Sequence[WindowScores],
        *,
        per_window: Callable[[EncodedText], bool],
    ) -> TokenBatch:
        texts = [doc.text for doc in documents]
        text_lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        text_base = np.cumsum(text_lengths + 1) - text_lengths
        points = code_points(_SEPARATOR + _SEPARATOR.join(texts) + _SEPARATOR)

        sequences: list[tuple[int, int, int]] = []
        first_rows: list[int] = []  # row of each sequence's first token, where its rows are contiguous
        merged: dict[int, IndexArray] = {}  # sequence -> rows, where windows are merged per token
        windows_as_sequences = False
        row = 0
        for index, doc in enumerate(documents):
            if len(doc.windows) == 1:
                sequences.append((index, 0, doc.num_tokens))
                first_rows.append(row + doc.content_offset)
            elif per_window(doc):
                windows_as_sequences = True
                for window_index, window in enumerate(doc.windows):
                    start, stop = doc.window_range(window_index)
                    sequences.append((index, start, stop))
                    first_rows.append(row + doc.content_offset)
                    row += len(window)
                continue
            else:
                merged[len(sequences)] = row + merged_rows(doc)
                sequences.append((index, 0, doc.num_tokens))
                first_rows.append(0)
            row += sum(len(window) for window in doc.windows)

        whole = all(start == 0 and stop == documents[index].num_tokens for index, start, stop in sequences)
        lengths = np.fromiter((stop - start for _, start, stop in sequences), dtype=np.int64, count=len(sequences))
        sequence_base = np.cumsum(lengths) - lengths
        count = int(lengths.sum())
        rows = np.repeat(np.asarray(first_rows, dtype=np.int64) - sequence_base, lengths) + np.arange(count)
        for sequence, sequence_rows in merged.items():
            rows[sequence_base[sequence] : sequence_base[sequence] + lengths[sequence]] = sequence_rows
        if whole:
            starts = _concatenate([doc.starts for doc in documents], np.int32)
            ends = _concatenate([doc.ends for doc in documents], np.int32)
        else:
            starts = _concatenate([documents[i].starts[a:b] for i, a, b in sequences], np.int32)
            ends = _concatenate([documents[i].ends[a:b] for i, a, b in sequences], np.int32)
        return TokenBatch(
            documents=documents,
            window_scores=window_scores,
            texts=texts,
            points=points,
            text_base=text_base,
            sequences=sequences,
            document_of_sequence=np.array([i for i, _, _ in sequences], dtype=np.intp),
            sequence_of=np.repeat(np.arange(len(sequences), dtype=np.intp), lengths),
            starts=starts,
            ends=ends,
            rows=rows.astype(np.intp),
            windows_as_sequences=windows_as_sequences,
        )

    def token_scores(self, *, logits: bool, need_rows: bool) -> TokenScores:
        """Each token's best class and probability (and every label's, where ``need_rows``)."""
        if not any(isinstance(scores, BestLabels) for scores in self.window_scores):
            matrices = [scores for scores in self.window_scores if not isinstance(scores, BestLabels)]
            matrix: FloatArray = _concatenate(matrices, np.float32)[self.rows]
            return TokenScores.of(softmax(matrix) if logits else matrix)
        if need_rows:
            raise ValueError("the engine returned best labels only, but every label's score is needed")
        best = [s if isinstance(s, BestLabels) else BestLabels.of(softmax(s) if logits else s)
                for s in self.window_scores]
        classes = _concatenate([b.classes for b in best], np.intp)[self.rows].astype(np.intp)
        scores = _concatenate([b.scores for b in best], np.float32)[self.rows]
        return TokenScores(classes, scores)

    def word_starts(self, *, pipeline_rules: bool) -> npt.NDArray[np.bool_]:
        """Where words begin, per token of the batch (see ``words``)."""
        facts = self.documents[0].facts
        ids = _concatenate([self.documents[i].token_ids[a:b] for i, a, b in self.sequences], np.int32)
        around = None
        if facts.continuation is None:
            lengths = [stop - start for _, start, stop in self.sequences]
            at = np.repeat(self.text_base[self.document_of_sequence], lengths) + self.starts
            around = self.points[at - 1], self.points[at]
        return word_starts(facts, ids, self.starts, self.ends, around, pipeline_rules=pipeline_rules)


def _concatenate(parts: Sequence[npt.NDArray[Any]], dtype: type[_Scalar]) -> npt.NDArray[_Scalar]:
    if not parts:
        return np.zeros(0, dtype=dtype)
    joined: npt.NDArray[_Scalar] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return joined
