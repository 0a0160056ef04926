"""Engines behind one protocol (``base.Engine``); the heavy ones are imported only when chosen."""

from __future__ import annotations

from worker.engine.base import Engine, EngineError, ScoreKind, WindowScores
from worker.settings import Settings

__all__ = ["Engine", "EngineError", "ScoreKind", "WindowScores", "create_engine"]


def create_engine(settings: Settings) -> Engine:
    """The engine ``NER_ENGINE`` names, not yet started."""
    if settings.engine == "hf":
        from worker.engine.hf import TransformersEngine

        return TransformersEngine.from_settings(settings)
    if settings.engine == "vllm":
        # Imported lazily: a CPU install has no vllm.
        from worker.engine.vllm.engine import VllmEngine

        return VllmEngine.from_settings(settings)
    from worker.engine.remote import RemoteEngine

    remote: Engine = RemoteEngine.from_settings(settings)
    return remote
