"""The engine host: one engine, many clients on a Unix socket, their requests merged into batches.

Every client connection gets READY (the engine's facts) once the engine is loaded; it may
connect earlier and wait. A REQUEST is checked on its own (window lengths, token ids) before
it joins a batch, so one client's bad request never fails another's: an engine error on a
merged batch is retried request by request, and only the request that fails alone gets the
ERROR. HEALTH frames tell every client when the engine stops (or starts again) taking work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from worker.engine import wire
from worker.engine.base import Engine, EngineError, WindowScores
from worker.engine.host.connection import FrameConnection
from worker.engine.host.facts import EngineFacts
from worker.engine.host.merge import Merger, Request
from worker.engine.host.metrics import HostMetrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HostStats:
    """Counters the host answers a STATS frame with (and the tests read)."""

    clients: int = 0
    requests: int = 0
    batches: int = 0
    windows: int = 0
    tokens: int = 0
    failed_requests: int = 0
    refused_frames: int = 0


class EngineHost:
    def __init__(self, engine: Engine, socket_path: str, *, max_batch_tokens: int, max_wait_s: float,
                 max_in_flight: int = 2, health_interval_s: float = 0.25) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.engine = engine
        self.socket_path = socket_path
        self.facts = EngineFacts.of(engine)
        self.stats = HostStats()
        self.metrics = HostMetrics()
        self._merger = Merger(max_batch_tokens, max_wait_s)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._health_interval_s = health_interval_s
        self._clients: set[ClientConnection] = set()
        self._loaded = False
        self._healthy = False
        self._tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event, *, drain_timeout_s: float = 30.0) -> None:
        """Listen, load the engine, serve until ``stop`` is set, then drain and close.

        Draining: no new connections; clients still connected are served until they hang up
        (a stopping worker sends its last batches) or ``drain_timeout_s`` runs out.
        """
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # a socket left by a host that was killed
        server = await asyncio.get_running_loop().create_unix_server(lambda: ClientConnection(self),
                                                                     path=self.socket_path)
        try:
            await self._load(stop)
            if self._loaded:
                await stop.wait()
            server.close()
            await self._drain(drain_timeout_s)
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            for request in self._merger.drain():
                request.reply(wire.ERROR, b"the engine host stopped")
            for client in list(self._clients):
                client.close()
            await self.engine.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    async def _load(self, stop: asyncio.Event) -> None:
        starting = asyncio.ensure_future(self.engine.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            return
        if (failure := starting.exception()) is not None:
            for client in list(self._clients):
                client.send(wire.ERROR, 0, f"the engine failed to start: {failure}".encode())
            raise failure
        self._loaded = True
        self._healthy = self.engine.ready()
        for client in list(self._clients):
            self.greet(client)
        self._spawn(self._dispatch())
        self._spawn(self._watch_health())
        log.info("engine host ready", extra={"socket": self.socket_path, "engine": type(self.engine).__name__})

    async def _drain(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._clients and loop.time() < deadline:
            await asyncio.sleep(0.05)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- connections ----------------------------------------------------------------------
    def attach(self, client: ClientConnection) -> None:
        self._clients.add(client)
        self.stats.clients = len(self._clients)
        if self._loaded:
            self.greet(client)

    def detach(self, client: ClientConnection) -> None:
        self._clients.discard(client)
        self.stats.clients = len(self._clients)

    def greet(self, client: ClientConnection) -> None:
        client.send(wire.READY, 0, self.facts.encode(pid=os.getpid(), engine=type(self.engine).__name__,
                                                     healthy=self._healthy))

    def on_frame(self, client: ClientConnection, frame: wire.Frame) -> None:
        if frame.kind == wire.STATS:
            client.send(wire.STATS, frame.request_id, json.dumps(dataclasses.asdict(self.stats)).encode())
            return
        if frame.kind != wire.REQUEST:
            self.refuse(client, f"a client sends requests and stats questions, not {wire.KINDS[frame.kind]} frames")
            return
        self.stats.requests += 1
        self.metrics.requests.inc()
        try:
            lengths, ids = wire.unpack_windows(frame.payload)
            self._check(lengths, ids)
        except wire.WireError as exc:
            self.stats.refused_frames += 1
            self._count_failure()
            client.send(wire.ERROR, frame.request_id, f"a bad request: {exc}".encode())
            return
        request_id = frame.request_id
        self.metrics.inflight_requests.inc()

        def reply(kind: int, payload: bytes) -> None:  # once per request: its rows or an error
            self.metrics.inflight_requests.dec()
            if kind == wire.ERROR:
                self._count_failure()
            client.send(kind, request_id, payload)

        request = Request(lengths, ids, reply, asyncio.get_running_loop().time())
        if lengths.size == 0:
            self._answer([request], [])
        else:
            self._merger.put(request)

    def _count_failure(self) -> None:
        """A request answered with an error: counted once, in the stats and in the metrics."""
        self.stats.failed_requests += 1
        self.metrics.failed_requests.inc()

    def refuse(self, client: ClientConnection, reason: str) -> None:
        """A frame the host cannot follow: say why and hang up (the stream cannot be resynchronised)."""
        self.stats.refused_frames += 1
        log.warning("engine host refused a client: %s", reason)
        client.send(wire.ERROR, 0, f"refused: {reason}".encode())
        client.close()

    def _check(self, lengths: npt.NDArray[np.int32], ids: npt.NDArray[np.int32]) -> None:
        if lengths.size and int(lengths.max()) > self.facts.max_length:
            raise wire.WireError(f"a window of {int(lengths.max())} tokens; the engine takes at most "
                                 f"{self.facts.max_length}")
        if ids.size and int(ids.min()) < 0:
            raise wire.WireError("a negative token id")

    # --- work -----------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._merger.next_batch()
            self._spawn(self._run(batch)).add_done_callback(lambda _: self._slots.release())

    async def _run(self, batch: list[Request]) -> None:
        windows = [window for request in batch for window in request.windows()]
        self.stats.batches += 1
        self.stats.windows += len(windows)
        tokens = sum(request.tokens for request in batch)
        self.stats.tokens += tokens
        try:
            with self.metrics.batch_on_engine(len(batch), tokens):
                scores = await self.engine.classify(windows)
            if len(scores) != len(windows):
                raise EngineError(f"the engine answered {len(scores)} windows for {len(windows)}")
        except Exception as exc:  # never lost: every request is answered, with its rows or an error
            if len(batch) > 1:
                # One client's request may have failed everyone's batch: retry each alone.
                await asyncio.gather(*(self._run([request]) for request in batch))
                return
            message = str(exc) if isinstance(exc, EngineError) else f"the engine failed: {type(exc).__name__}: {exc}"
            batch[0].reply(wire.ERROR, message.encode())
            return
        self._answer(batch, scores)

    def _answer(self, batch: list[Request], scores: list[WindowScores]) -> None:
        position = 0
        for request in batch:
            count = int(request.lengths.size)
            rows = scores[position : position + count]
            position += count
            request.reply(*wire.pack_answer(rows, len(self.facts.id2label)))

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            healthy = self.engine.ready()
            if healthy != self._healthy:
                self._healthy = healthy
                log.warning("engine host: the engine is %s", "ready again" if healthy else "not ready")
                for client in list(self._clients):
                    client.send(wire.HEALTH, 0, b"\x01" if healthy else b"\x00")


class ClientConnection(FrameConnection):
    """One client's connection to the host."""

    def __init__(self, host: EngineHost) -> None:
        super().__init__()
        self._host = host

    def opened(self) -> None:
        self._host.attach(self)

    def frame_received(self, frame: wire.Frame) -> None:
        self._host.on_frame(self, frame)

    def unreadable(self, reason: str) -> None:
        self._host.refuse(self, reason)

    def lost(self, reason: str) -> None:
        self._host.detach(self)
