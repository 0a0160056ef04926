"""The one small contract every engine implements.

The worker tokenizes documents itself (exact offsets, one tokenization per text, long
documents split into windows) and hands an engine nothing but token id windows, each already
wrapped in the model's special tokens. The engine answers one score matrix per window:
``[len(window), num_labels]`` float32, softmax probabilities or logits as ``scores`` says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

ScoreKind = Literal["probabilities", "logits"]
WindowScores = npt.NDArray[np.float32]


class EngineError(RuntimeError):
    """The engine failed on a batch; the batch is retried or the worker stops (never dropped)."""


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
