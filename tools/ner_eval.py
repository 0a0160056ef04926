"""Span <-> token label conversion and entity-level scoring for the tiny NER model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ner_synth import LABELS, Example, Span
from transformers import BertForTokenClassification, PreTrainedTokenizerBase


def token_labels(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> tuple[list[str], int]:
    """IOB2 tag per token from character spans; also counts span edges that cut a token."""
    tags = ["O"] * len(offsets)
    misaligned = 0
    for start, end, label in spans:
        inside = [i for i, (s, e) in enumerate(offsets) if s < end and e > start and e > s]
        if not inside or offsets[inside[0]][0] != start or offsets[inside[-1]][1] != end:
            misaligned += 1
        for n, i in enumerate(inside):
            tags[i] = f"{'B' if n == 0 else 'I'}-{label}"
    return tags, misaligned


def decode(tags: Sequence[str], offsets: Sequence[tuple[int, int]]) -> list[Span]:
    """IOB2 tags back to spans; an I- that does not continue its type starts a new entity."""
    spans: list[Span] = []
    current: list[int | str] | None = None  # [start, end, label]
    for tag, (start, end) in zip(tags, offsets, strict=True):
        if start == end:  # special or padding token
            continue
        prefix, _, label = tag.partition("-")
        if prefix == "I" and current is not None and current[2] == label:
            current[1] = end
            continue
        if current is not None:
            spans.append((int(current[0]), int(current[1]), str(current[2])))
            current = None
        if prefix in ("B", "I"):
            current = [start, end, label]
    if current is not None:
        spans.append((int(current[0]), int(current[1]), str(current[2])))
    return spans


def predict(model: BertForTokenClassification, tokenizer: PreTrainedTokenizerBase,
            texts: Sequence[str], batch_size: int = 32) -> list[list[Span]]:
    """Predicted spans per text (texts longer than the model's window are truncated)."""
    id2label = model.config.id2label
    results: list[list[Span]] = []
    for first in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[first:first + batch_size]), padding=True, truncation=True,
                        return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping").tolist()
        with torch.inference_mode():
            best = model(**enc).logits.argmax(-1).tolist()
        for row, row_offsets, mask in zip(best, offsets, enc["attention_mask"].tolist(), strict=True):
            tags = [id2label[i] if m else "O" for i, m in zip(row, mask, strict=True)]
            results.append(decode(tags, [tuple(o) for o in row_offsets]))
    return results


def evaluate(model: BertForTokenClassification, tokenizer: PreTrainedTokenizerBase,
             examples: Sequence[Example]) -> dict[str, float]:
    """Exact-match entity micro F1, plus F1 per label."""
    predicted = predict(model, tokenizer, [e.text for e in examples])
    counts = {label: [0, 0, 0] for label in LABELS}  # true positives, predicted, gold
    for example, spans in zip(examples, predicted, strict=True):
        gold = set(example.spans)
        for start, end, label in spans:
            counts[label][0] += (start, end, label) in gold
            counts[label][1] += 1
        for _, _, label in gold:
            counts[label][2] += 1
    scores = {}
    for key, (tp, pred, gold_n) in [("micro", [sum(c[i] for c in counts.values()) for i in range(3)]),
                                    *counts.items()]:
        precision, recall = tp / max(pred, 1), tp / max(gold_n, 1)
        scores[f"f1_{key}"] = 2 * precision * recall / max(precision + recall, 1e-9)
        if key == "micro":
            scores |= {"precision": precision, "recall": recall, "entities": float(gold_n)}
    return scores
