"""Decoding a batch at once gives every document exactly the entities it gets alone, and exactly
the entities of the per-document decoder that preceded batch decoding (pinned in bench/)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from bench._legacy_text.decode import EntityDecoder as PerDocumentDecoder
from tests.unit.text.helpers import ID2LABEL
from tests.unit.text.test_text_properties import FAMILIES, PROFILE, STRATEGIES, TEXTS, hf_tokenizer, random_scores
from worker.text.decode import EntityDecoder
from worker.text.scores import BestLabels
from worker.text.tokenize import DocumentTokenizer, EncodedText

DECODING = {
    "family": st.sampled_from(FAMILIES),
    "strategy": st.sampled_from(STRATEGIES),
    "max_length": st.integers(6, 20),
    "stride_share": st.floats(0.0, 0.99),
    "seed": st.integers(0, 2**32 - 1),
    "peaked": st.booleans(),
    "merge": st.sampled_from(["context", "longest"]),
    "rules": st.sampled_from(["default", "pipeline"]),
    "ignore": st.sampled_from([("O",), ("O", "LOC"), (), ("O", "B-PER")]),
    "logits": st.booleans(),
}


def _batch(texts, family, max_length, stride_share, seed, peaked, logits):
    documents = DocumentTokenizer(hf_tokenizer(family), max_length=max_length,
                                  stride=int(stride_share * (max_length - 2)), max_document_tokens=100_000)
    encoded = [doc for doc in documents.encode(texts) if isinstance(doc, EncodedText)]
    scores = [random_scores(doc, seed + i, peaked=peaked) for i, doc in enumerate(encoded)]
    if not logits:
        scores = [[np.exp(s) / np.exp(s).sum(axis=1, keepdims=True) for s in doc_scores] for doc_scores in scores]
    return encoded, scores


@PROFILE
@given(texts=st.lists(TEXTS, min_size=1, max_size=6), **DECODING)
def test_a_batch_decodes_like_its_documents_one_at_a_time_and_like_the_per_document_decoder(
    texts, family, strategy, max_length, stride_share, seed, peaked, merge, rules, ignore, logits
):
    encoded, scores = _batch(texts, family, max_length, stride_share, seed, peaked, logits)
    options = {"aggregation": strategy, "ignore_labels": ignore, "scores": "logits" if logits else "probabilities",
               "window_merge": merge, "word_rules": rules}
    decoder = EntityDecoder(ID2LABEL, **options)
    together = decoder.decode_batch(encoded, [s for doc_scores in scores for s in doc_scores])
    alone = [decoder.decode(doc, doc_scores) for doc, doc_scores in zip(encoded, scores, strict=True)]
    before = [PerDocumentDecoder(ID2LABEL, **options).decode(doc, doc_scores)  # type: ignore[arg-type]
              for doc, doc_scores in zip(encoded, scores, strict=True)]
    event(f"entities: {min(sum(len(e) for e in alone), 5)}+, windows: {min(sum(len(d.windows) for d in encoded), 5)}+")
    assert together == alone
    assert alone == before


@PROFILE
@given(texts=st.lists(TEXTS, min_size=1, max_size=6), **DECODING)
def test_best_labels_decode_like_full_score_rows(
    texts, family, strategy, max_length, stride_share, seed, peaked, merge, rules, ignore, logits
):
    """For none, simple and first an engine may answer each token's best label and its
    probability only; the entities are the same as from the full rows."""
    if strategy not in ("none", "simple", "first"):
        strategy = "simple"
    encoded, scores = _batch(texts, family, max_length, stride_share, seed, peaked, logits=False)
    decoder = EntityDecoder(ID2LABEL, aggregation=strategy, ignore_labels=ignore, window_merge=merge,
                            word_rules=rules)
    flat = [s for doc_scores in scores for s in doc_scores]
    assert decoder.decode_batch(encoded, [BestLabels.of(s) for s in flat]) == decoder.decode_batch(encoded, flat)


def test_a_document_with_unusable_scores_fails_alone():
    encoded, scores = _batch(["Anna met Bob in Paris", "zoe muller visited paris", "new york city"],
                             "wordpiece", 16, 0.25, 7, True, logits=True)
    scores[1][0][0, 0] = np.nan
    scores[2][0] = scores[2][0][:, :4]
    decoder = EntityDecoder(ID2LABEL, scores="logits")
    results = decoder.decode_batch(encoded, [s for doc_scores in scores for s in doc_scores])
    assert results[0] == decoder.decode(encoded[0], scores[0])
    assert isinstance(results[1], ValueError) and "NaN" in str(results[1])
    assert isinstance(results[2], ValueError) and "shape" in str(results[2])


def test_best_labels_are_refused_where_every_label_is_needed():
    encoded, scores = _batch(["Anna met Bob in Paris"], "wordpiece", 16, 0.25, 7, True, logits=False)
    decoder = EntityDecoder(ID2LABEL, aggregation="average")
    (result,) = decoder.decode_batch(encoded, [BestLabels.of(s) for s in scores[0]])
    assert isinstance(result, ValueError) and "every label" in str(result)


def test_a_wrong_number_of_score_matrices_is_refused():
    encoded, scores = _batch(["Anna met Bob", "in Paris"], "wordpiece", 16, 0.25, 7, True, logits=True)
    with pytest.raises(ValueError, match="score matrices"):
        EntityDecoder(ID2LABEL, scores="logits").decode_batch(encoded, scores[0])



def test_best_labels_that_are_no_class_fail_their_document_alone():
    encoded, scores = _batch(["Anna met Bob in Paris", "zoe muller visited paris"], "wordpiece", 16, 0.25, 7, True,
                             logits=False)
    best = [BestLabels.of(s) for doc_scores in scores for s in doc_scores]
    best[1] = BestLabels(np.full(len(best[1]), 9), best[1].scores)
    decoder = EntityDecoder(ID2LABEL)
    first, second = decoder.decode_batch(encoded, best)
    assert first == decoder.decode(encoded[0], scores[0])
    assert isinstance(second, ValueError) and "outside 0..8" in str(second)
