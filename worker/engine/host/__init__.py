"""One engine shared by several worker processes on a host.

``python -m worker.engine.host`` loads the engine ``NER_ENGINE`` names (transformers, vLLM or
remote) once and serves ``classify`` over a Unix socket, merging the requests of its clients
into engine batches; ``HostedEngine`` is the client, an ``Engine`` like any other;
``EngineHostProcess`` starts and stops the host program for a supervisor.
"""

from __future__ import annotations

from worker.engine.host.client import HostedEngine
from worker.engine.host.facts import EngineFacts
from worker.engine.host.process import EngineHostProcess

__all__ = ["EngineFacts", "EngineHostProcess", "HostedEngine"]
