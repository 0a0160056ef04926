"""An engine that stops taking work inside the host makes every client not ready, and ready
again when it recovers (a remote server that comes back); the host itself in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from worker.engine.base import EngineError, ScoreKind, WindowScores
from worker.engine.host.client import HostedEngine
from worker.engine.host.facts import EngineFacts
from worker.engine.host.server import EngineHost


class SwitchableEngine:
    """Scores every token [1, 0]; ``up`` says whether it takes work (pure logic, no model)."""

    scores: ScoreKind = "probabilities"

    def __init__(self) -> None:
        self.name = "switchable"
        self.id2label = {0: "O", 1: "B-X"}
        self.max_length = 16
        self.up = True

    async def start(self) -> None:
        pass

    def ready(self) -> bool:
        return self.up

    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        if not self.up:
            raise EngineError("the engine is down")
        return [np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(w), 1)) for w in windows]

    async def close(self) -> None:
        pass


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.01)


def test_clients_follow_the_hosts_engine_readiness(tmp_path: Path) -> None:
    async def run() -> list[bool]:
        engine = SwitchableEngine()
        socket_path = str(tmp_path / "engine.sock")
        host = EngineHost(engine, socket_path, max_batch_tokens=64, max_wait_s=0.0, health_interval_s=0.02)
        stop = asyncio.Event()
        serving = asyncio.create_task(host.serve(stop, drain_timeout_s=1.0))
        client = HostedEngine(socket_path, EngineFacts.of(engine), start_timeout_s=5)
        await client.start()
        seen = [client.ready()]
        engine.up = False
        await _until(lambda: not client.ready())
        seen.append(client.ready())
        try:
            await client.classify([[1, 2]])
        except EngineError:
            seen.append(False)
        engine.up = True
        await _until(client.ready)
        seen.append(client.ready())
        seen.append((await client.classify([[1, 2, 3]]))[0].shape == (3, 2))
        await client.close()
        stop.set()
        await serving
        return seen

    assert asyncio.run(run()) == [True, False, False, True, True]


def test_a_client_expecting_another_model_is_refused_at_start(tmp_path: Path) -> None:
    async def run() -> str:
        engine = SwitchableEngine()
        socket_path = str(tmp_path / "engine.sock")
        stop = asyncio.Event()
        serving = asyncio.create_task(EngineHost(engine, socket_path, max_batch_tokens=64, max_wait_s=0.0)
                                      .serve(stop, drain_timeout_s=1.0))
        other = EngineFacts("another-model", {0: "O"}, 16, "probabilities")
        client = HostedEngine(socket_path, other, start_timeout_s=5)
        try:
            await client.start()
            return "started"
        except EngineError as exc:
            return str(exc)
        finally:
            stop.set()
            await serving

    assert "not the expected" in asyncio.run(run())
