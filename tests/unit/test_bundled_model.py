"""The bundled tiny NER model loads offline and finds entities in text it never saw.

The held-out texts come from templates that the training script never used, filled from a
seed it never used (tools/ner_synth.py, heldout_examples()). Scoring is exact-match entity
spans; the decoder here is deliberately independent of the worker's and the training
script's, so the figure checks the shipped files and nothing else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from worker.bundled_model import TINY_NER_PATH

REPO_ROOT = Path(__file__).resolve().parents[2]
# The synthetic-data generator is a tool script, not part of the installed package.
if str(REPO_ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tools"))

from ner_synth import HELDOUT_TEMPLATES, TRAIN_TEMPLATES, heldout_examples  # noqa: E402

Span = tuple[int, int, str]
EXPECTED_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
MIN_F1 = 0.85


@pytest.fixture(scope="module")
def bundle() -> tuple[torch.nn.Module, object]:
    """The shipped model and tokenizer, loaded from the package folder with no hub access."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_NER_PATH, local_files_only=True)
    model = AutoModelForTokenClassification.from_pretrained(TINY_NER_PATH, local_files_only=True)
    model.eval()
    return model, tokenizer


def spans_from_tags(tags: Sequence[str], offsets: Sequence[Sequence[int]]) -> list[Span]:
    """IOB2 tags to character spans: B- opens, I- of the same type extends, anything else closes."""
    spans: list[Span] = []
    open_span: tuple[int, int, str] | None = None
    for tag, (start, end) in zip(tags, offsets, strict=True):
        if start == end:  # [CLS], [SEP], padding
            continue
        kind, _, label = tag.partition("-")
        if kind == "I" and open_span is not None and open_span[2] == label:
            open_span = (open_span[0], end, label)
            continue
        if open_span is not None:
            spans.append(open_span)
        open_span = (start, end, label) if kind in ("B", "I") else None
    if open_span is not None:
        spans.append(open_span)
    return spans


def predict_spans(model: torch.nn.Module, tokenizer: object, texts: list[str]) -> list[list[Span]]:
    id2label = model.config.id2label
    predicted: list[list[Span]] = []
    for first in range(0, len(texts), 64):
        enc = tokenizer(texts[first:first + 64], padding=True, truncation=True,  # type: ignore[operator]
                        return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping").tolist()
        with torch.inference_mode():
            best = model(**enc).logits.argmax(-1).tolist()
        for ids, row_offsets in zip(best, offsets, strict=True):
            predicted.append(spans_from_tags([id2label[i] for i in ids], row_offsets))
    return predicted


def test_decoder_groups_bio_tags_into_exact_spans() -> None:
    tags = ["O", "B-PER", "I-PER", "I-PER", "O", "I-LOC", "B-ORG", "B-ORG", "I-MISC", "O"]
    offsets = [(0, 0), (0, 4), (5, 8), (8, 10), (11, 13), (14, 19), (20, 23), (24, 27), (27, 30), (0, 0)]
    assert spans_from_tags(tags, offsets) == [
        (0, 10, "PER"), (14, 19, "LOC"), (20, 23, "ORG"), (24, 27, "ORG"), (27, 30, "MISC"),
    ]


def test_bundle_is_small_and_has_the_nine_iob2_labels() -> None:
    assert TINY_NER_PATH.is_dir()
    size = (TINY_NER_PATH / "model.safetensors").stat().st_size
    assert 0 < size < 10 * 1024 * 1024
    config = json.loads((TINY_NER_PATH / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["BertForTokenClassification"]
    assert [config["id2label"][str(i)] for i in range(len(config["id2label"]))] == EXPECTED_LABELS
    assert config["label2id"] == {label: i for i, label in enumerate(EXPECTED_LABELS)}


def test_tokenizer_is_cased_with_offsets_and_a_max_length(bundle: tuple[torch.nn.Module, object]) -> None:
    _, tokenizer = bundle
    assert tokenizer.model_max_length == 128  # type: ignore[attr-defined]
    text = "Zoë Ødegaard met NATO officials in Kraków."
    enc = tokenizer(text, return_offsets_mapping=True)  # type: ignore[operator]
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])  # type: ignore[attr-defined]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert "[UNK]" not in tokens
    # No lowercasing or accent stripping: every piece is the original text at its offsets.
    for token, (start, end) in zip(tokens[1:-1], enc["offset_mapping"][1:-1], strict=True):
        assert token.removeprefix("##") == text[start:end]
    assert "." in tokens  # punctuation is split off
    assert tokenizer.tokenize("Paris") != tokenizer.tokenize("paris")  # type: ignore[attr-defined]


def test_heldout_templates_never_seen_in_training() -> None:
    assert not set(HELDOUT_TEMPLATES) & set(TRAIN_TEMPLATES)


def test_entity_f1_on_heldout_templates(bundle: tuple[torch.nn.Module, object]) -> None:
    model, tokenizer = bundle
    examples = heldout_examples()
    assert len(examples) >= 300
    predicted = predict_spans(model, tokenizer, [e.text for e in examples])

    true_positives = predicted_count = gold_count = 0
    for example, spans in zip(examples, predicted, strict=True):
        gold = set(example.spans)
        true_positives += len(gold & set(spans))
        predicted_count += len(spans)
        gold_count += len(gold)
    precision = true_positives / max(predicted_count, 1)
    recall = true_positives / max(gold_count, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(f"held-out entity micro F1 {f1:.4f} (precision {precision:.4f}, recall {recall:.4f}, "
          f"{gold_count} entities in {len(examples)} texts)")
    assert gold_count > 500
    assert f1 >= MIN_F1
