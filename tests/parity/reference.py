"""Running the reference ``TokenClassificationPipeline`` and our decoder on the same model outputs.

The pipeline's own ``preprocess``/``forward``/``postprocess`` are called exactly as its
``__call__`` chains them (``ChunkPipeline``), but the model runs once per text and the outputs are
post-processed once per strategy. Our decoder receives the very logits the pipeline saw (rows of
its padding dropped), after a check that our windows are the pipeline's windows token for token.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import pipeline

from tests.parity.zoo import Zoo
from worker.text.decode import Entity, EntityDecoder
from worker.text.graphemes import whole_characters
from worker.text.tokenize import DocumentTokenizer, EncodedText


@dataclass
class Run:
    text: str
    encoded: EncodedText
    window_logits: list[np.ndarray]
    outputs: list[dict[str, Any]]  # the pipeline's forward outputs, one per chunk
    answers: dict[str, list[Entity]] = field(default_factory=dict)  # normalized pipeline entities per strategy


class Reference:
    def __init__(self, zoo: Zoo, *, stride: int) -> None:
        self.zoo = zoo
        self.stride = stride
        self.pipe = pipeline("token-classification", model=zoo.model, tokenizer=zoo.tokenizer, device="cpu")
        self.tokenizer = DocumentTokenizer(
            zoo.tokenizer, max_length=zoo.tokenizer.model_max_length, stride=stride, max_document_tokens=100_000
        )
        self.inconsistent_offsets = 0
        self.preprocess_params, _, _ = self.pipe._sanitize_parameters(aggregation_strategy="simple", stride=stride)

    def run(self, text: str, encoded: EncodedText) -> Run:
        outputs = [self.pipe.forward(chunk) for chunk in self.pipe.preprocess(text, **self.preprocess_params)]
        logits = []
        for index, (output, window) in enumerate(zip(outputs, encoded.windows, strict=True)):
            real = output["attention_mask"][0].numpy().astype(bool)
            ids = output["input_ids"][0].numpy()[real].tolist()
            assert ids == window, f"window differs from the pipeline's for {text!r}"
            logits.append(output["logits"][0].float().numpy()[real])
            self._use_consistent_offsets(output, encoded, index)
        return Run(text, encoded, logits, outputs)

    def _use_consistent_offsets(self, output: dict[str, Any], encoded: EncodedText, index: int) -> None:
        """Give the pipeline the offsets the tokenizer returns for the whole text.

        With byte-level BPE and ``trim_offsets`` the tokenizers library leaves the first token of
        every overflow window untrimmed (its span starts on the space before the word), so the
        pipeline sees one token with two different spans. That is the only difference allowed
        here; ``test_text_pipeline_bugs`` shows what it does to the pipeline's answer."""
        offsets = output["offset_mapping"][0]
        content = ~output["special_tokens_mask"][0].numpy().astype(bool)
        start, stop = encoded.window_range(index)
        ours = np.stack([encoded.starts[start:stop], encoded.ends[start:stop]], axis=1)
        theirs = offsets.numpy()[content]
        differing = np.flatnonzero((theirs != ours).any(axis=1))
        assert set(differing.tolist()) <= ({0} if index else set()), f"offsets differ at {differing} in {index}"
        if len(differing):
            self.inconsistent_offsets += 1
            patched = offsets.clone()
            patched[np.flatnonzero(content)] = torch.from_numpy(ours.astype(np.int64))
            output["offset_mapping"] = patched[None]

    def pipeline_entities(self, run: Run, strategy: str) -> list[Entity]:
        """The pipeline's answer for ``strategy``, under our output rules (``normalized``)."""
        if strategy not in run.answers:
            _, _, post = self.pipe._sanitize_parameters(aggregation_strategy=strategy)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the fallback-heuristic warning, once per call
                run.answers[strategy] = normalized(run.text, list(self.pipe.postprocess(run.outputs, **post)))
        return run.answers[strategy]


def normalized(text: str, entities: list[dict[str, Any]]) -> list[Entity]:
    """The pipeline's entities under our documented output rules (re-implemented here except the
    character-joining rule): spans widened to whole characters, an entity overlapping the previous
    kept one starts at its end, whitespace trimmed from both ends, empty spans dropped.
    Labels: ``entity_group`` (or ``entity`` for none)."""
    result: list[Entity] = []
    last_end = 0
    for item in entities:
        start, end = whole_characters(text, int(item["start"]), int(item["end"]))
        start = max(start, last_end)
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if end <= start:
            continue
        label = item.get("entity_group", item.get("entity"))
        result.append({"label": str(label), "text": text[start:end], "start": start, "end": end,
                       "score": float(item["score"])})
        last_end = end
    return result


def differences(ours: list[Entity], theirs: list[Entity], *, tolerance: float = 1e-4) -> list[str]:
    """Human-readable differences (empty when equal): label, start, end exact, score within tolerance."""
    problems = []
    if len(ours) != len(theirs):
        problems.append(f"{len(ours)} entities vs the pipeline's {len(theirs)}")
    for mine, ref in zip(ours, theirs, strict=False):
        same = (mine["label"], mine["start"], mine["end"]) == (ref["label"], ref["start"], ref["end"])
        if not same or abs(mine["score"] - ref["score"]) > tolerance:
            problems.append(f"ours {mine} vs pipeline {ref}")
    return problems


def decoder_for(zoo: Zoo, strategy: str, *, quirks: bool) -> EntityDecoder:
    """Our decoder on logits; ``quirks`` selects the pipeline's window merge and word rules."""
    return EntityDecoder(zoo.model.config.id2label, aggregation=strategy,  # type: ignore[arg-type]
                         scores="logits", window_merge="longest" if quirks else "context",
                         word_rules="pipeline" if quirks else "default")
