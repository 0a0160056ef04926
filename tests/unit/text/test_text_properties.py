"""Properties that hold for any text, any scores, any tokenizer family and any settings."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.parity.zoo import tokenizer as zoo_tokenizer
from tests.unit.text.helpers import BIO, ID2LABEL, wordpiece
from worker.text.decode import EntityDecoder
from worker.text.tokenize import DocumentTokenizer, EncodedText

INTERESTING = [
    *" \t\n\r\u00a0\u2009\u3000\u200b\u200c\u200d\ufeff\u00ad\u0301\u0308\ufe0f",
    *"abcxyzABCéüßİ\u0131Ø.,;'-#@$%&()[]<>",
    *"北京東京한국어محمدשלוםनमस्तेกรุง",
    "😀", "👍🏽", "🇫🇷", "👨\u200d💻", "[SEP]", "<s>", "</s>", "##", "Paris", "Zoë",
]
CHARACTERS = st.one_of(st.sampled_from(INTERESTING), st.characters(exclude_categories=("Cs",)))
# Half short texts of anything, half longer ones that need several windows.
TEXTS = st.one_of(st.lists(CHARACTERS, max_size=40).map("".join),
                  st.lists(CHARACTERS, min_size=40, max_size=160).map("".join))
FAMILIES = ("wordpiece", "bert-uncased", "roberta", "xlm-roberta")
STRATEGIES = ("none", "simple", "first", "average", "max")
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hf_tokenizer(family: str):
    return wordpiece() if family == "wordpiece" else zoo_tokenizer(family)


def random_scores(encoded: EncodedText, seed: int, *, peaked: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    result = []
    for window in encoded.windows:
        logits = rng.normal(0.0, 1.0, (len(window), len(BIO))).astype(np.float32)
        if peaked:  # confident labels, so that many entities appear
            logits[np.arange(len(window)), rng.integers(0, len(BIO), len(window))] += 8.0
        result.append(logits)
    return result


@PROFILE
@given(
    text=TEXTS,
    family=st.sampled_from(FAMILIES),
    strategy=st.sampled_from(STRATEGIES),
    max_length=st.integers(6, 20),
    stride_share=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32 - 1),
    peaked=st.booleans(),
    merge=st.sampled_from(["context", "longest"]),
    rules=st.sampled_from(["default", "pipeline"]),
    ignore=st.sampled_from([("O",), ("O", "LOC"), (), ("O", "B-PER")]),
)
def test_entities_are_exact_sorted_disjoint_and_trimmed(
    text, family, strategy, max_length, stride_share, seed, peaked, merge, rules, ignore
):
    hf = hf_tokenizer(family)
    content = max_length - 2
    documents = DocumentTokenizer(hf, max_length=max_length, stride=int(stride_share * content),
                                  max_document_tokens=100_000)
    (encoded,) = documents.encode([text])
    assert isinstance(encoded, EncodedText)
    decoder = EntityDecoder(ID2LABEL, aggregation=strategy, ignore_labels=ignore, scores="logits",
                            window_merge=merge, word_rules=rules)
    entities = decoder.decode(encoded, random_scores(encoded, seed, peaked=peaked))
    event(f"windows: {min(len(encoded.windows), 3)}+, entities: {min(len(entities), 3)}+")
    allowed = set(BIO) if strategy == "none" else {"O", "PER", "ORG", "LOC", "MISC"}
    previous_end = 0
    for entity in entities:
        start, end = entity["start"], entity["end"]
        assert previous_end <= start < end <= len(text)
        assert text[start:end] == entity["text"]
        assert not text[start].isspace() and not text[end - 1].isspace()
        assert entity["label"] in allowed and entity["label"] not in ignore
        assert 0.0 <= entity["score"] <= 1.0 + 1e-6
        previous_end = end


@PROFILE
@given(
    text=TEXTS,
    family=st.sampled_from(FAMILIES),
    strategy=st.sampled_from(STRATEGIES),
    max_length=st.integers(6, 16),
    stride_share=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
def test_windows_lose_nothing_when_scores_do_not_depend_on_context(
    text, family, strategy, max_length, stride_share, seed
):
    """If every token's scores depend on its id alone, the windows agree on every token they
    share, and the context merge must give exactly the entities of one window over the whole text."""
    hf = hf_tokenizer(family)
    table = np.random.default_rng(seed).normal(0.0, 3.0, (len(hf), len(BIO))).astype(np.float32)
    content = max_length - 2
    small = DocumentTokenizer(hf, max_length=max_length, stride=int(stride_share * content),
                              max_document_tokens=100_000)
    whole = DocumentTokenizer(hf, max_length=4096, stride=0, max_document_tokens=100_000)
    decoder = EntityDecoder(ID2LABEL, aggregation=strategy, scores="logits")
    results = []
    for documents in (small, whole):
        (encoded,) = documents.encode([text])
        assert isinstance(encoded, EncodedText)
        results.append(decoder.decode(encoded, [table[window] for window in encoded.windows]))
    windowed, single = results
    event(f"windows: {min(len(small.encode([text])[0].windows), 3)}+, entities: {min(len(single), 3)}+")  # type: ignore[union-attr]
    assert [(e["label"], e["start"], e["end"]) for e in windowed] == [
        (e["label"], e["start"], e["end"]) for e in single
    ]
    assert np.allclose([e["score"] for e in windowed], [e["score"] for e in single], atol=1e-6)
