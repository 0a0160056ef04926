"""Parity with ``transformers.pipeline("token-classification", aggregation_strategy=…, stride=…)``.

Same tiny random-weight models, same logits, 520 varied texts (52 of them over 4x the window),
four tokenizers of three families, every aggregation strategy. Labels, starts and ends must be
equal and scores within 1e-4, after the documented output rules (spans trimmed of whitespace,
never overlapping, never empty) are applied to the pipeline's answer.
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest
import torch
from transformers import pipeline

from tests.parity.corpus import corpus
from tests.parity.reference import Reference, Run, decoder_for, differences, normalized
from tests.parity.zoo import FAMILIES, zoo
from worker.text.characters import code_points
from worker.text.decode import EntityDecoder
from worker.text.tokenize import DocumentTokenizer, EncodedText
from worker.text.words import word_starts

pytestmark = pytest.mark.parity

TEXTS = corpus(520)
STRIDE = 16
STRATEGIES = ("none", "simple", "first", "average", "max")
MAX_LENGTH = 64


@functools.cache
def runs(family: str) -> tuple[Reference, list[Run]]:
    reference = Reference(zoo(family), stride=STRIDE)
    encoded = reference.tokenizer.encode(TEXTS)
    return reference, [reference.run(text, doc) for text, doc in zip(TEXTS, encoded, strict=True)
                       if isinstance(doc, EncodedText)]


def test_the_corpus_is_varied_and_long_enough():
    _, all_runs = runs("bert-cased")
    assert len(all_runs) == len(TEXTS) >= 500
    long_texts = [run for run in all_runs if run.encoded.num_tokens > 4 * MAX_LENGTH]
    assert len(long_texts) >= 50
    joined = "".join(TEXTS)
    for sample in ("é", "😀", "北京", "محمد", "\t", "\n", "   ", "\u200b", "\u200d", "[SEP]", "e\u0301"):
        assert sample in joined


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pipeline_rules_give_the_pipelines_entities(family, strategy):
    """With ``window_merge="longest"`` and ``word_rules="pipeline"`` every text matches,
    long ones included (``none`` only where the pipeline accepts it: one window)."""
    reference, all_runs = runs(family)
    decoder = decoder_for(reference.zoo, strategy, quirks=True)
    compared, problems = 0, []
    for run in all_runs:
        if strategy == "none" and len(run.encoded.windows) > 1:
            continue  # the pipeline refuses stride without aggregation and would truncate
        theirs = reference.pipeline_entities(run, strategy)
        ours = decoder.decode(run.encoded, run.window_logits)
        compared += 1
        problems += [f"{run.text!r}: {p}" for p in differences(ours, theirs)]
    assert not problems, "\n".join(problems[:10])
    print(f"pipeline rules, {family}, {strategy}: {compared} texts equal")
    assert compared >= (300 if strategy == "none" else 500)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_default_rules_give_the_pipelines_entities_wherever_its_word_rule_holds(family, strategy):
    """The defaults (context merge, exact word rules) on every one-window text, except for the
    word strategies on texts where the pipeline's word test is wrong (tabs, newlines, no-break
    spaces, decomposed accents, zero-width characters, byte pieces: test_text_pipeline_bugs)."""
    reference, all_runs = runs(family)
    decoder = decoder_for(reference.zoo, strategy, quirks=False)
    compared, problems = 0, []
    for run in all_runs:
        if len(run.encoded.windows) > 1:
            continue
        if strategy in ("first", "average", "max") and not _word_rules_agree(run.encoded):
            continue
        theirs = reference.pipeline_entities(run, strategy)
        compared += 1
        problems += [f"{run.text!r}: {p}" for p in differences(decoder.decode(run.encoded, run.window_logits), theirs)]
    assert not problems, "\n".join(problems[:10])
    print(f"default rules, {family}, {strategy}: {compared} texts equal")
    assert compared >= 100


def _word_rules_agree(encoded: EncodedText) -> bool:
    points = np.append(code_points(encoded.text), np.uint32(0))  # index -1 and len(text) read as 0
    around = points[encoded.starts - 1], points[encoded.starts]
    arrays = encoded.facts, encoded.token_ids, encoded.starts, encoded.ends, around
    exact = word_starts(*arrays)
    quirky = word_starts(*arrays, pipeline_rules=True)
    return bool(np.array_equal(exact[1:], quirky[1:]))


@pytest.mark.parametrize("family", ["bert-cased", "roberta", "xlm-roberta"])
def test_windowed_documents_decode_like_whole_documents(family):
    """With a context-free model (every token scored from its id alone) windows lose nothing,
    so decoding a long document in overlapping windows must give exactly what the pipeline gives
    on the whole document in one pass. The pipeline's own stride merge does not (counted)."""
    cf = zoo(family, context_free=True)
    texts = [t for t in TEXTS if len(t) > 600][:30] + TEXTS[:10]
    whole = pipeline("token-classification", model=cf.model, tokenizer=_unbounded(cf.tokenizer), device="cpu")
    documents = DocumentTokenizer(cf.tokenizer, max_length=MAX_LENGTH, stride=STRIDE, max_document_tokens=100_000)
    encoded = [doc for doc in documents.encode(texts) if isinstance(doc, EncodedText)]
    assert sum(len(doc.windows) > 4 for doc in encoded) >= 25
    problems = []
    for text, doc in zip(texts, encoded, strict=True):
        outputs = [whole.forward(chunk) for chunk in whole.preprocess(text, is_split_into_words=False)]
        logits = _logits(cf.model, doc.windows)
        for strategy in STRATEGIES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = normalized(text, whole.postprocess(outputs, **whole._sanitize_parameters(
                    aggregation_strategy=strategy)[2]))
            decoder = EntityDecoder(cf.model.config.id2label, aggregation=strategy,  # type: ignore[arg-type]
                                    scores="logits", word_rules="pipeline")
            problems += [f"{strategy} {text[:40]!r}: {p}" for p in differences(decoder.decode(doc, logits), theirs)]
    assert not problems, "\n".join(problems[:10])


def _unbounded(tokenizer):
    copied = copy.deepcopy(tokenizer)
    copied.model_max_length = 2000
    return copied


def _logits(model, windows: list[list[int]]) -> list[np.ndarray]:
    """One padded batch; a context-free model's rows do not depend on the padding."""
    width = max(len(w) for w in windows)
    batch = torch.tensor([w + [0] * (width - len(w)) for w in windows])
    with torch.no_grad():
        rows = model(input_ids=batch).logits.numpy()
    return [rows[i, : len(w)] for i, w in enumerate(windows)]
