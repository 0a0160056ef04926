"""Small hand-made tokenizers and score builders for decoding tests."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from worker.text.tokenize import DocumentTokenizer, EncodedText

BIO = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
ID2LABEL = dict(enumerate(BIO))

_WORDS = [
    "barack", "obama", "visited", "paris", "new", "york", "city", "in", "and", "the", "micro", "##soft",
    "play", "##ing", "zoe", "muller", "##s", ".", ",", "-", "'",
    *"abcdefghijklmnopqrstuvwxyz",
]


@functools.cache
def wordpiece(lowercase: bool = True, model_max_length: int = 16) -> PreTrainedTokenizerFast:
    """A BERT-style tokenizer over a fixed vocabulary: every word above is one token."""
    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_WORDS])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]", model_max_length=model_max_length,
    )


def encode(text: str, *, max_length: int = 16, stride: int = 4, tokenizer: PreTrainedTokenizerFast | None = None
           ) -> EncodedText:
    document = DocumentTokenizer(tokenizer or wordpiece(), max_length=max_length, stride=stride,
                                 max_document_tokens=10_000)
    result = document.encode([text])[0]
    assert isinstance(result, EncodedText)
    return result


def probabilities(labels: Sequence[str], *, confidence: float = 0.9, names: Sequence[str] = BIO) -> np.ndarray:
    """One probability row per label: ``confidence`` on it, the rest spread evenly."""
    rest = (1.0 - confidence) / (len(names) - 1)
    rows = np.full((len(labels), len(names)), rest, dtype=np.float32)
    for row, label in enumerate(labels):
        rows[row, names.index(label)] = confidence
    return rows


def window_scores(encoded: EncodedText, token_labels: Sequence[str], *,
                  per_window: Mapping[tuple[int, int], str] | None = None,
                  confidence: Sequence[float] | None = None, names: Sequence[str] = BIO) -> list[np.ndarray]:
    """Score matrices for every window: content token ``i`` gets ``token_labels[i]`` (or
    ``per_window[(window, i)]``); special tokens get ``O``."""
    result = []
    for index, window in enumerate(encoded.windows):
        start, stop = encoded.window_range(index)
        labels = ["O"] * len(window)
        weights = [0.9] * len(window)
        for token in range(start, stop):
            row = encoded.content_offset + token - start
            labels[row] = (per_window or {}).get((index, token), token_labels[token])
            if confidence is not None:
                weights[row] = confidence[token]
        rows = np.concatenate([probabilities([label], confidence=weight, names=names)
                               for label, weight in zip(labels, weights, strict=True)])
        result.append(rows)
    return result
