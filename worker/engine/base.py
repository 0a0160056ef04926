"""The one small contract every engine implements.

The worker tokenizes documents itself (exact offsets, one tokenization per text, long
documents split into windows) and hands an engine nothing but token id windows, each already
wrapped in the model's special tokens. The engine answers one score matrix per window:
``[len(window), num_labels]`` float32, softmax probabilities or logits as ``scores`` says; or,
where the aggregation needs no more (none, simple, first) and the engine supports it, each
token's best label and its probability (``BestLabels``, 5 bytes per token instead of 4 per label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from worker.text.kinds import ScoreKind as ScoreKind  # part of the engine protocol, re-exported
from worker.text.scores import BestLabels, WindowScores

__all__ = ["BestLabels", "Engine", "EngineError", "ModelFacts", "ScoreKind", "WindowScores", "read_model_facts"]


class EngineError(RuntimeError):
    """The engine failed on a batch; the batch is retried or the worker stops (never dropped)."""


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What an engine reports about its model, read from the model's config."""

    name: str
    id2label: dict[int, str]
    max_length: int
    pad_token_id: int


def read_model_facts(model: str, *caps: int, revision: str = "") -> ModelFacts:
    """The model's name, labels and longest window; ``caps`` (0 = none) can only lower the
    window limit that the model's position table allows. ``revision``: of a hub id; empty: the default."""
    from transformers import AutoConfig

    from worker.text.tokenize import model_length_limit

    config = AutoConfig.from_pretrained(model, revision=revision or None)
    return ModelFacts(
        name=str(getattr(config, "_name_or_path", "") or model).rstrip("/").split("/")[-1],
        id2label={int(k): v for k, v in config.id2label.items()},
        max_length=model_length_limit(min((cap for cap in caps if cap > 0), default=0), config),
        pad_token_id=int(getattr(config, "pad_token_id", 0) or 0),
    )


@runtime_checkable
class Engine(Protocol):
    name: str
    """Model name reported in every output record's ``ner.model``."""
    id2label: dict[int, str]
    max_length: int
    """Most tokens one window may have, special tokens included."""
    scores: ScoreKind

    async def start(self) -> None:
        """Load the model; after this ``classify`` may be called."""

    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        """Score every token of every window, in the order given."""

    def ready(self) -> bool:
        """True while the engine can take work (for /readyz)."""

    async def close(self) -> None:
        """Release the model, processes and connections."""
