"""Tiny tokenizers of the three families (WordPiece, byte-level BPE, Unigram) and tiny
random-weight token-classification models, built locally in seconds.

The classifier weights are scaled up so that probabilities are peaked and varied (random
initialisation alone gives nearly uniform, uninformative scores).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from tests.parity.corpus import training_text

BIO_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
FAMILIES = ("bert-cased", "bert-uncased", "roberta", "xlm-roberta")


@dataclass(frozen=True)
class Zoo:
    family: str
    tokenizer: PreTrainedTokenizerFast
    model: Any  # a transformers *ForTokenClassification in eval mode


def _wordpiece(lowercase: bool) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=lowercase)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=1200, special_tokens=specials, min_frequency=2)
    backend.train_from_iterator(training_text(), trainer)
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", mask_token="[MASK]", model_max_length=64,
    )


def _byte_level_bpe() -> PreTrainedTokenizerFast:
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(training_text(), trainer)
    backend.post_processor = processors.RobertaProcessing(
        ("</s>", backend.token_to_id("</s>")), ("<s>", backend.token_to_id("<s>")), trim_offsets=True
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=64,
    )


def _unigram() -> PreTrainedTokenizerFast:
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=1200, special_tokens=specials, unk_token="<unk>")
    backend.train_from_iterator(training_text(), trainer)
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=64,
    )


@functools.cache
def tokenizer(family: str) -> PreTrainedTokenizerFast:
    if family == "bert-cased":
        return _wordpiece(lowercase=False)
    if family == "bert-uncased":
        return _wordpiece(lowercase=True)
    if family == "roberta":
        return _byte_level_bpe()
    if family == "xlm-roberta":
        return _unigram()
    raise ValueError(family)


@functools.cache
def zoo(family: str, *, context_free: bool = False, labels: tuple[str, ...] = tuple(BIO_LABELS)) -> Zoo:
    """Tokenizer plus a tiny random model. ``context_free`` models score each token from its id
    alone (no layers, no position embeddings), so overlapping windows agree on shared tokens."""
    import torch
    from transformers import (
        BertConfig,
        BertForTokenClassification,
        RobertaConfig,
        RobertaForTokenClassification,
        XLMRobertaConfig,
        XLMRobertaForTokenClassification,
    )

    tok = tokenizer(family)
    common: dict[str, Any] = dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=0 if context_free else 2, num_attention_heads=2,
        intermediate_size=64, id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(sum(map(ord, family)) + (7 if context_free else 0))
    # A context-free model also reads whole documents in one pass (positions are all zero).
    positions = 2048 if context_free else 64
    model: Any
    if family.startswith("bert"):
        model = BertForTokenClassification(BertConfig(max_position_embeddings=positions, pad_token_id=0, **common))
    elif family == "roberta":
        model = RobertaForTokenClassification(RobertaConfig(max_position_embeddings=positions + 2, pad_token_id=1,
                                                            **common))
    else:
        model = XLMRobertaForTokenClassification(XLMRobertaConfig(max_position_embeddings=positions + 2,
                                                                  pad_token_id=1, **common))
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.normal_(0.0, 0.5)
        if context_free:
            base = getattr(model, model.base_model_prefix)
            base.embeddings.position_embeddings.weight.zero_()
            base.embeddings.token_type_embeddings.weight.zero_()
    return Zoo(family, tok, model.eval())
