"""The choices the decoder takes, defined once and importable without numpy (settings name them).

``Aggregation``: how token labels become entity spans (Hugging Face pipeline semantics).
``ScoreKind``: what an engine returns per token: probabilities, or logits the decoder softmaxes.
"""

from __future__ import annotations

from typing import Literal

Aggregation = Literal["none", "simple", "first", "average", "max"]
ScoreKind = Literal["probabilities", "logits"]
