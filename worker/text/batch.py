"""A batch of documents as flat arrays over all their tokens, for decoding in a few passes.

Each document is one *sequence* of content tokens (its windows' scores merged per token, see
``windows``), or, in the reference pipeline's stride merge, one sequence per window. The
sequences' tokens are concatenated; ``rows`` says where each token's scores sit in the
concatenated window score matrices, so that one gather (and one softmax, one argmax) serves the
whole batch. Python loops here run per document, per window or per span, never per token.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.text.aggregate import ClassArray, IndexArray, TokenScores
from worker.text.characters import CodePoints, code_points
from worker.text.scores import BestLabels, Stacked, concatenate
from worker.text.tokenize import EncodedText
from worker.text.windows import merged_rows
from worker.text.words import word_starts


@dataclass(frozen=True, slots=True)
class KeptTokens:
    """Tokens of a batch whose best class is of interest, in order, with their class and score."""

    tokens: IndexArray
    classes: ClassArray
    scores: npt.NDArray[np.float32]
    opens: npt.NDArray[np.bool_]
    """The token is the first of its sequence."""


_SEPARATOR = "\0"  # between texts, so that a read just outside any text finds 0: not a space, not a joiner
Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)  # no slots: the per-token arrays below are built on first use and kept
class TokenBatch:
    documents: Sequence[EncodedText]
    texts: list[str]
    points: CodePoints
    """Code points of all texts, each preceded and followed by a 0."""
    text_base: Int64Array
    """Index in ``points`` of each text's first character."""
    document_of_sequence: IndexArray
    sequence_first: Int64Array
    """Index of each sequence's first token in its document."""
    sequence_length: Int64Array
    sequence_base: Int64Array
    """Index of each sequence's first token in the batch."""
    first_rows: Int64Array
    """Row of each sequence's first token in the stacked window scores (where its rows follow
    one another; see ``merged``)."""
    merged: dict[int, IndexArray]
    """Rows of the sequences whose windows are merged per token."""
    windowed_documents: frozenset[int]
    """Documents whose windows are separate sequences."""
    one_window_each: bool
    """Every document has one window: each sequence is a document, its rows follow one another."""

    @staticmethod
    def of(documents: Sequence[EncodedText], *, per_window: Callable[[EncodedText], bool]) -> TokenBatch:
        texts = [doc.text for doc in documents]
        count = len(documents)
        text_lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
        text_base = np.cumsum(text_lengths + 1) - text_lengths
        points = code_points(_SEPARATOR + _SEPARATOR.join(texts) + _SEPARATOR)
        one_window_each = all(len(doc.windows) == 1 for doc in documents)
        if one_window_each:
            # The common case: arrays straight from the documents, no Python step per document
            # beyond reading three numbers of each.
            window_tokens = np.fromiter((doc.window_tokens for doc in documents), dtype=np.int64, count=count)
            lengths = np.fromiter((doc.num_tokens for doc in documents), dtype=np.int64, count=count)
            content_offset = np.fromiter((doc.content_offset for doc in documents), dtype=np.int64, count=count)
            first_rows = np.cumsum(window_tokens) - window_tokens + content_offset
            sequence_document = np.arange(count, dtype=np.intp)
            sequence_first = np.zeros(count, dtype=np.int64)
            merged: dict[int, IndexArray] = {}
            windowed: set[int] = set()
        else:
            sequence_document, sequence_first, lengths, first_rows, merged, windowed = _sequences(documents,
                                                                                                    per_window)
        return TokenBatch(
            documents=documents,
            texts=texts,
            points=points,
            text_base=text_base,
            document_of_sequence=sequence_document,
            sequence_first=sequence_first,
            sequence_length=lengths,
            sequence_base=np.cumsum(lengths) - lengths,
            first_rows=first_rows,
            merged=merged,
            windowed_documents=frozenset(windowed),
            one_window_each=one_window_each,
        )

    @functools.cached_property
    def rows(self) -> IndexArray:
        """Per token: its row in the window score matrices stacked in order."""
        lengths, base = self.sequence_length, self.sequence_base
        rows = np.repeat(self.first_rows - base, lengths) + np.arange(int(lengths.sum()))
        for sequence, sequence_rows in self.merged.items():
            rows[base[sequence] : base[sequence] + lengths[sequence]] = sequence_rows
        return rows.astype(np.intp, copy=False)

    @functools.cached_property
    def sequence_start(self) -> npt.NDArray[np.bool_]:
        """Per token of the batch: whether it is the first of its sequence."""
        starts = np.zeros(int(self.sequence_length.sum()), dtype=bool)
        starts[self.sequence_base[self.sequence_length > 0]] = True
        return starts

    def kept_tokens(self, best: BestLabels, kept: npt.NDArray[np.bool_]) -> KeptTokens:
        """The tokens whose best class is ``kept`` (a lookup by class id), found in one pass over
        the stacked rows themselves, without a row per token: only where every document has one
        window (``one_window_each``), so each row is one token's or a special token's."""
        assert self.one_window_each
        found = np.flatnonzero(kept[best.classes])
        first_rows = self.first_rows
        if len(first_rows):
            found = found[np.searchsorted(found, first_rows[0]) :]  # the first document's leading special rows
        # The document whose content starts last at or before the row; past its content, a special row.
        document = np.searchsorted(first_rows, found, side="right") - 1
        position = found - first_rows[document]
        content = position < self.sequence_length[document]
        found, document, position = found[content], document[content], position[content]
        tokens = (self.sequence_base[document] + position).astype(np.intp, copy=False)
        return KeptTokens(tokens, best.classes[found], best.scores[found], position == 0)

    @functools.cached_property
    def sequences(self) -> list[tuple[int, int, int]]:
        """(document, first token, stop token) of each sequence."""
        firsts = self.sequence_first.tolist()
        stops = (self.sequence_first + self.sequence_length).tolist()
        return list(zip(self.document_of_sequence.tolist(), firsts, stops, strict=True))

    @functools.cached_property
    def sequence_of(self) -> IndexArray:
        """Per token of the batch: the index of its sequence."""
        return np.repeat(np.arange(len(self.sequence_length), dtype=np.intp), self.sequence_length)

    def token_scores(self, stacked: Stacked) -> TokenScores:
        """Each token's best class and probability (and every label's, where the engine sent them)."""
        if stacked.rows is not None:
            return TokenScores.of(stacked.rows[self.rows])
        assert stacked.best is not None
        return TokenScores(stacked.best.classes[self.rows], stacked.best.scores[self.rows])

    @functools.cached_property
    def offsets(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Per token of the batch: code point offsets into its own text (built on first use)."""
        docs = self.documents
        return (concatenate([docs[i].starts[a:b] for i, a, b in self.sequences], np.int32),
                concatenate([docs[i].ends[a:b] for i, a, b in self.sequences], np.int32))

    def word_starts(self, *, pipeline_rules: bool) -> npt.NDArray[np.bool_]:
        """Where words begin, per token of the batch (see ``words``)."""
        facts = self.documents[0].facts
        ids = concatenate([self.documents[i].token_ids[a:b] for i, a, b in self.sequences], np.int32)
        starts, ends = self.offsets
        around = None
        if facts.continuation is None:
            at = self.text_base[self.document_of_sequence[self.sequence_of]] + starts
            around = self.points[at - 1], self.points[at]
        result = word_starts(facts, ids, starts, ends, around, pipeline_rules=pipeline_rules)
        if not pipeline_rules:
            self._follow_given_words(result)
        return result

    def _follow_given_words(self, result: npt.NDArray[np.bool_]) -> None:
        """Pre-split input: a word begins exactly where the given words do (the tokenizer may cut
        one word into pieces that look like words, such as ``U.S.`` into ``U . S .``). The
        reference pipeline applies its text rules to the joined words instead."""
        for sequence, (document, first, stop) in enumerate(self.sequences):
            words = self.documents[document].word_index
            if words is None or stop == first:
                continue
            base = int(self.sequence_base[sequence])
            result[base : base + stop - first] = words[first:stop] != np.append(-1, words[first : stop - 1])

    def character_spans(self, first_tokens: IndexArray, last_tokens: IndexArray) -> tuple[IndexArray, Int64Array,
                                                                                          Int64Array]:
        """Document, start and end (code points into its text) of each span of tokens."""
        # An empty sequence starts where the next one does: the last sequence starting at or
        # before a token is its own.
        sequences = np.searchsorted(self.sequence_base, first_tokens, side="right") - 1
        documents = self.document_of_sequence[sequences]
        if "offsets" in self.__dict__:  # already built for the word strategies
            starts, ends = self.offsets
            return documents, starts[first_tokens].astype(np.int64), ends[last_tokens].astype(np.int64)
        # Offsets of span edges only, from each document's tokenizer result: a step per span.
        shift = (self.sequence_first - self.sequence_base)[sequences]
        encodings = [doc.encoding for doc in self.documents]
        firsts, lasts = (first_tokens + shift).tolist(), (last_tokens + shift).tolist()
        owners = documents.tolist()
        begins = [encodings[d].token_to_chars(first)[0] for d, first in zip(owners, firsts, strict=True)]
        finishes = [encodings[d].token_to_chars(last)[1] for d, last in zip(owners, lasts, strict=True)]
        return documents, np.array(begins, dtype=np.int64), np.array(finishes, dtype=np.int64)


def _sequences(documents: Sequence[EncodedText], per_window: Callable[[EncodedText], bool]) -> tuple[
        IndexArray, Int64Array, Int64Array, Int64Array, dict[int, IndexArray], set[int]]:
    """Documents of several windows among others: a step per document and per window. Returns
    each sequence's document, first token, length and first row (where its rows are contiguous),
    the rows of the sequences whose windows are merged per token, and the documents decoded
    window by window."""
    sequences: list[tuple[int, int, int]] = []
    first_rows: list[int] = []
    merged: dict[int, IndexArray] = {}  # sequence -> rows, where windows are merged per token
    windowed: set[int] = set()
    row = 0
    for index, doc in enumerate(documents):
        if len(doc.windows) > 1 and per_window(doc):
            windowed.add(index)
            for window_index, window in enumerate(doc.windows):
                start, stop = doc.window_range(window_index)
                sequences.append((index, start, stop))
                first_rows.append(row + doc.content_offset)
                row += len(window)
            continue
        if len(doc.windows) == 1:
            first_rows.append(row + doc.content_offset)
        else:
            merged[len(sequences)] = row + merged_rows(doc)
            first_rows.append(0)
        sequences.append((index, 0, doc.num_tokens))
        row += doc.window_tokens
    table = np.array(sequences, dtype=np.int64).reshape(-1, 3)
    return (table[:, 0].astype(np.intp), table[:, 1], table[:, 2] - table[:, 1],
            np.array(first_rows, dtype=np.int64), merged, windowed)
