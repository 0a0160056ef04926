"""Parity for pre-split input: ``pipeline(words, is_split_into_words=True)`` against the worker's
tokenizer given the same words (a tuple) and its decoder on the same logits.

The corpus texts split on whitespace are the words. The pipeline joins them with single spaces and
shifts each token's offsets (given per word) into that sentence; the worker's offsets must be the
same, and with the pipeline's rules (its stride merge, its word tests applied to the joined
sentence) every entity must be too. The default word rule follows the given words instead, so
it is compared where the two rules agree.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from tests.parity.corpus import corpus
from tests.parity.reference import Reference, decoder_for, differences, normalized
from tests.parity.zoo import FAMILIES, zoo
from worker.text.decode import Entity
from worker.text.tokenize import EncodedText

pytestmark = pytest.mark.parity

WORD_LISTS = [tuple(text.split()) for text in corpus(260)]
STRIDE = 16
STRATEGIES = ("none", "simple", "first", "average", "max")


@dataclass
class WordsRun:
    words: tuple[str, ...]
    encoded: EncodedText
    window_logits: list[np.ndarray]
    outputs: list[dict[str, Any]]


@functools.cache
def runs(family: str) -> tuple[Reference, list[WordsRun]]:
    reference = Reference(zoo(family), stride=STRIDE)
    pipe = reference.pipe
    params, _, _ = pipe._sanitize_parameters(aggregation_strategy="simple", stride=STRIDE, is_split_into_words=True)
    result = []
    for words, encoded in zip(WORD_LISTS, reference.tokenizer.encode(WORD_LISTS), strict=True):
        assert isinstance(encoded, EncodedText)
        assert encoded.text == " ".join(words)
        outputs = [pipe.forward(chunk) for chunk in pipe.preprocess(list(words), **params)]
        logits = []
        for index, (output, window) in enumerate(zip(outputs, encoded.windows, strict=True)):
            real = output["attention_mask"][0].numpy().astype(bool)
            assert output["input_ids"][0].numpy()[real].tolist() == window, f"window {index} differs for {words!r}"
            logits.append(output["logits"][0].float().numpy()[real])
        result.append(WordsRun(words, encoded, logits, outputs))
    return reference, result


def pipeline_entities(reference: Reference, run: WordsRun, strategy: str) -> list[Entity]:
    """The pipeline's answer under our output rules. Its postprocess shifts the offsets of
    pre-split input in place (``start_ind += start_char`` on a tensor element), so each call gets
    fresh copies of them."""
    _, _, post = reference.pipe._sanitize_parameters(aggregation_strategy=strategy)
    outputs = [{**output, "offset_mapping": output["offset_mapping"].clone()} for output in run.outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return normalized(run.encoded.text, list(reference.pipe.postprocess(outputs, **post)))


@pytest.mark.parametrize("family", FAMILIES)
def test_offsets_are_the_pipelines_offsets_into_the_joined_words(family):
    """The pipeline's per-word offsets shifted by each word's place in the joined sentence."""
    _, all_runs = runs(family)
    assert sum(len(run.encoded.windows) > 1 for run in all_runs) >= 20
    for run in all_runs:
        bases = np.cumsum([0] + [len(word) + 1 for word in run.words])
        for index, output in enumerate(run.outputs):
            content = ~output["special_tokens_mask"][0].numpy().astype(bool)
            word_ids = np.array([w for w in output["word_ids"] if w is not None], dtype=np.int64)
            theirs = output["offset_mapping"][0].numpy()[content] + bases[word_ids][:, None]
            start, stop = run.encoded.window_range(index)
            ours = np.stack([run.encoded.starts[start:stop], run.encoded.ends[start:stop]], axis=1)
            assert np.array_equal(ours, theirs), f"{run.words!r} window {index}"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pipeline_rules_give_the_pipelines_entities_for_words(family, strategy):
    reference, all_runs = runs(family)
    decoder = decoder_for(reference.zoo, strategy, quirks=True)
    compared, problems = 0, []
    for run in all_runs:
        if strategy == "none" and len(run.encoded.windows) > 1:
            continue  # the pipeline refuses stride without aggregation
        compared += 1
        theirs = pipeline_entities(reference, run, strategy)
        problems += [f"{run.words!r}: {p}" for p in differences(decoder.decode(run.encoded, run.window_logits), theirs)]
    assert not problems, "\n".join(problems[:10])
    assert compared >= (150 if strategy == "none" else 250)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("strategy", ["first", "average", "max"])
def test_default_rules_follow_the_given_words(family, strategy):
    """The default word rule: a word begins where a given word does. Where that is also the
    pipeline's answer (every token of a given word is a continuation by the pipeline's text test,
    and every word's first token is not) the entities are equal; elsewhere they may differ."""
    reference, all_runs = runs(family)
    decoder = decoder_for(reference.zoo, strategy, quirks=False)
    compared, problems = 0, []
    for run in all_runs:
        if len(run.encoded.windows) > 1 or not _pipeline_sees_the_given_words(reference, run):
            continue
        compared += 1
        theirs = pipeline_entities(reference, run, strategy)
        problems += [f"{run.words!r}: {p}" for p in differences(decoder.decode(run.encoded, run.window_logits), theirs)]
    assert not problems, "\n".join(problems[:10])
    assert compared >= 10


def _pipeline_sees_the_given_words(reference: Reference, run: WordsRun) -> bool:
    (output,) = run.outputs
    content = ~output["special_tokens_mask"][0].numpy().astype(bool)
    offsets = output["offset_mapping"][0].clone()  # gather_pre_entities shifts them in place
    pre = reference.pipe.gather_pre_entities(
        run.encoded.text, output["input_ids"][0].numpy(), np.zeros((len(content), 1)), offsets,
        output["special_tokens_mask"][0].numpy(), reference.pipe._sanitize_parameters(
            aggregation_strategy="first")[2]["aggregation_strategy"],
        word_ids=output["word_ids"], word_to_chars_map=output["word_to_chars_map"])
    starts = np.array([not entity["is_subword"] for entity in pre])
    words = run.encoded.word_index
    assert words is not None
    given = words != np.append(-1, words[:-1])
    return bool(np.array_equal(starts[1:], given[1:]))
