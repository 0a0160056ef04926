"""``HostedEngine``: an engine whose model runs in an engine host, reached over its Unix socket.

It knows the engine's facts before it starts (the annotator reads them at construction) and
checks them against the host's READY, so a worker never decodes one model's scores with
another model's labels. A host that goes away fails every request in flight with
``EngineError`` and makes ``ready()`` false for good: the worker stops or is restarted, as
with an engine of its own that died.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from worker.engine import wire
from worker.engine.base import EngineError, ScoreKind, WindowScores
from worker.engine.host.connection import FrameConnection
from worker.engine.host.facts import EngineFacts
from worker.settings import Settings

DEFAULT_START_TIMEOUT_S = 900.0  # a vLLM host loads and warms several replicas first


class HostedEngine:
    def __init__(self, socket_path: str, facts: EngineFacts, *,
                 start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self.facts = facts
        self.name = facts.name
        self.id2label: dict[int, str] = dict(facts.id2label)
        self.max_length = facts.max_length
        self.scores: ScoreKind = facts.scores
        self.host_info: dict[str, Any] = {}
        self._start_timeout_s = start_timeout_s
        self._connection: _HostConnection | None = None
        self._greeted: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[wire.Frame]] = {}
        self._next_id = 1
        self._healthy = False
        self._failure: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, socket_path: str) -> HostedEngine:
        """A client of a host serving the engine ``settings`` name (facts read from the model's config)."""
        from worker.engine import create_engine

        return cls(socket_path, EngineFacts.of(create_engine(settings)))

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect (waiting for the host's socket to appear) and wait for the host's READY."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._start_timeout_s
        self._greeted = loop.create_future()
        while True:
            try:
                await loop.create_unix_connection(lambda: _HostConnection(self), path=self.socket_path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:  # the host is not listening yet
                if loop.time() > deadline:
                    raise EngineError(f"no engine host at {self.socket_path} within "
                                      f"{self._start_timeout_s:.0f} s: {exc}") from exc
                await asyncio.sleep(0.05)
        try:
            await asyncio.wait_for(asyncio.shield(self._greeted), max(0.0, deadline - loop.time()))
        except TimeoutError:
            await self.close()
            raise EngineError(f"the engine host at {self.socket_path} was not ready within "
                              f"{self._start_timeout_s:.0f} s") from None
        except EngineError:
            await self.close()
            raise

    def ready(self) -> bool:
        return self._connection is not None and self._failure is None and self._healthy

    async def close(self) -> None:
        self._lose("the hosted engine was closed")
        if self._connection is not None:
            self._connection.close()

    # --- work -----------------------------------------------------------------------------
    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        if not windows:
            return []
        lengths = [len(window) for window in windows]
        frame = await self._ask(wire.REQUEST, wire.pack_windows(windows), sum(lengths))
        try:
            return wire.unpack_answer(frame.kind, frame.payload, lengths)
        except wire.WireError as exc:
            raise EngineError(f"the engine host sent a bad result: {exc}") from exc

    async def host_stats(self) -> dict[str, int]:
        """The host's counters (requests, batches, windows, tokens, ...)."""
        frame = await self._ask(wire.STATS, b"", 0)
        stats: dict[str, int] = json.loads(frame.payload)
        return stats

    async def _ask(self, kind: int, payload: bytes, tokens: int) -> wire.Frame:
        if self._failure is not None or self._connection is None:
            raise EngineError(self._failure or "the hosted engine is not started")
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[wire.Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._connection.send(kind, request_id, payload)
        frame = await future
        if frame.kind == wire.ERROR:
            raise EngineError(f"the engine host: {frame.payload.decode(errors='replace')}")
        return frame

    # --- frames from the host -------------------------------------------------------------
    def on_connected(self, connection: _HostConnection) -> None:
        self._connection = connection

    def on_frame(self, frame: wire.Frame) -> None:
        if frame.kind == wire.READY:
            self._greet(frame)
        elif frame.kind == wire.HEALTH:
            self._healthy = frame.payload == b"\x01"
        elif frame.request_id == 0 and frame.kind == wire.ERROR:  # about the host, not one request
            self._lose(f"the engine host: {frame.payload.decode(errors='replace')}")
        elif (future := self._pending.pop(frame.request_id, None)) is not None and not future.done():
            future.set_result(frame)

    def _greet(self, frame: wire.Frame) -> None:
        try:
            info = json.loads(frame.payload)
            facts = EngineFacts.from_json(info)
        except (ValueError, KeyError, TypeError) as exc:
            self._lose(f"the engine host sent an unreadable READY: {exc}")
            return
        if facts != self.facts:
            self._lose(f"the engine host serves {facts}, not the expected {self.facts}")
            return
        self.host_info = info
        self._healthy = bool(info.get("healthy", True))
        if self._greeted is not None and not self._greeted.done():
            self._greeted.set_result(None)

    def on_lost(self, reason: str) -> None:
        self._lose(f"the engine host connection was lost: {reason}")

    def _lose(self, reason: str) -> None:
        """Fail the start and every request in flight; ready() stays false from now on."""
        self._failure = self._failure or reason
        self._healthy = False
        if self._greeted is not None and not self._greeted.done():
            self._greeted.set_exception(EngineError(self._failure))
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(EngineError(self._failure))
        if self._connection is not None:
            self._connection.close()


class _HostConnection(FrameConnection):
    def __init__(self, engine: HostedEngine) -> None:
        super().__init__()
        self._engine = engine

    def opened(self) -> None:
        self._engine.on_connected(self)

    def frame_received(self, frame: wire.Frame) -> None:
        self._engine.on_frame(frame)

    def unreadable(self, reason: str) -> None:
        self._engine.on_lost(f"unreadable frame: {reason}")

    def lost(self, reason: str) -> None:
        self._engine.on_lost(reason)
