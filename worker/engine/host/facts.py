"""What a client must know about the host's engine before it starts (the annotator reads it then)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, cast

from worker.engine.base import Engine, ScoreKind

_SCORE_KINDS: tuple[ScoreKind, ...] = ("probabilities", "logits")


@dataclass(frozen=True, slots=True)
class EngineFacts:
    name: str
    id2label: dict[int, str]
    max_length: int
    scores: ScoreKind

    @classmethod
    def of(cls, engine: Engine) -> EngineFacts:
        """The facts of an engine object (read from its model's config; the engine need not be started)."""
        return cls(engine.name, dict(engine.id2label), engine.max_length, engine.scores)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineFacts:
        """Facts as the host sent them (JSON turns the label ids into strings)."""
        scores = data["scores"]
        if scores not in _SCORE_KINDS:
            raise ValueError(f"unknown score kind {scores!r}")
        return cls(str(data["name"]), {int(k): str(v) for k, v in data["id2label"].items()},
                   int(data["max_length"]), cast(ScoreKind, scores))

    def encode(self, **extra: Any) -> bytes:
        return json.dumps({**self.to_json(), **extra}).encode()
