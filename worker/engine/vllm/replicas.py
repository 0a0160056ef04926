"""The worker's side of one vLLM engine replica: its process, its connection, its open requests.

The replica program (``worker.engine.vllm.replica``) builds its engine first and connects back to a Unix
socket the worker listens on only afterwards. Connecting late is deliberate: vLLM forks its
engine-core process while the engine is built, and a connection that existed then would be
inherited by that process and stay open after the replica died, hiding the death.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.engine import wire
from worker.engine.base import EngineError, WindowScores

log = logging.getLogger(__name__)

# The folder that holds the ``worker`` package: the replica imports it from there.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class ReplicaHandle:
    """One replica process and the requests it has not answered yet."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: subprocess.Popen[bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.outstanding_tokens = 0
        self.failure: str | None = None
        self._pending: dict[int, tuple[asyncio.Future[list[WindowScores]], list[int]]] = {}
        self._next_id = 1
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- process --------------------------------------------------------------------------
    def launch(self, socket_path: str, config: dict[str, Any]) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        env.setdefault("VLLM_LOGGING_PREFIX", f"[replica {self.index}] ")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.engine.vllm.replica", "--socket", socket_path,
             "--index", str(self.index), "--config", json.dumps(config)],
            env=env, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: the engine core dies with it on kill()
        )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def describe(self) -> str:
        pid = self.process.pid if self.process is not None else "?"
        return f"vLLM replica {self.index} (pid {pid})"

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once the replica said READY; raise EngineError if it failed or timed out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._ready.done():
            code = self.exit_code()
            if code is not None:
                # Give a last ERROR frame a moment to arrive before reporting the exit.
                await asyncio.sleep(0.2)
                if not self._ready.done():
                    self.fail_start(f"{self.describe()} exited with code {code} while starting")
                break
            if loop.time() > deadline:
                self.fail_start(f"{self.describe()} did not start within {timeout_s:.0f} s")
                break
            await asyncio.wait([self._ready], timeout=0.25)
        self._ready.result()

    def fail_start(self, message: str) -> None:
        self.failure = self.failure or message
        if not self._ready.done():
            self._ready.set_exception(EngineError(self.failure))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    # --- connection -----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.done() and not self._ready.exception() and self.failure is None

    def attach(self, transport: asyncio.Transport, info: dict[str, Any]) -> None:
        self.transport = transport
        # What the replica reported when it came up: the one place an operator sees it.
        log.info("%s ready: %s", self.describe(), ", ".join(f"{key} {value}" for key, value in info.items()))
        if not self._ready.done():
            self._ready.set_result(None)

    def submit(self, windows: Sequence[Sequence[int]], lengths: list[int]) -> asyncio.Future[list[WindowScores]]:
        future: asyncio.Future[list[WindowScores]] = asyncio.get_running_loop().create_future()
        if self.failure is not None or self.transport is None or self.transport.is_closing():
            future.set_exception(EngineError(self.failure or f"{self.describe()} is not connected"))
            return future
        request_id = self._next_id
        self._next_id += 1
        payload = wire.pack_windows(windows)
        self._pending[request_id] = (future, lengths)
        self.outstanding_tokens += sum(lengths)
        self.transport.write(wire.header(wire.REQUEST, request_id, len(payload)))
        self.transport.write(payload)
        return future

    def on_frame(self, message: wire.Frame) -> None:
        entry = self._pending.pop(message.request_id, None)
        if entry is None:
            return  # a late answer to a request already failed; nothing waits for it
        future, lengths = entry
        self.outstanding_tokens -= sum(lengths)
        if future.done():
            return
        if message.kind == wire.ERROR:
            future.set_exception(EngineError(f"{self.describe()}: {message.payload.decode(errors='replace')}"))
            return
        try:
            result = wire.unpack_answer(message.kind, message.payload, lengths)
        except wire.WireError as exc:
            future.set_exception(EngineError(f"{self.describe()} sent a bad result: {exc}"))
            return
        future.set_result(result)

    def on_lost(self, reason: str) -> None:
        """The connection is gone: every open request fails now, none is silently dropped."""
        code = self.exit_code()
        detail = f" (exit code {code})" if code is not None else ""
        self.failure = self.failure or f"{self.describe()} stopped: {reason}{detail}"
        self.fail_start(self.failure)
        pending, self._pending = self._pending, {}
        self.outstanding_tokens = 0
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(EngineError(self.failure))


class ReplicaConnection(asyncio.Protocol):
    """One accepted connection; it belongs to a replica once that replica says READY."""

    def __init__(self, handles: Sequence[ReplicaHandle]) -> None:
        self._handles = handles
        self._handle: ReplicaHandle | None = None
        self._buffer = wire.FrameBuffer()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._buffer.feed(data)
        except wire.WireError as exc:
            self._lose(f"unreadable frame: {exc}")
            return
        for message in frames:
            if self._handle is not None:
                self._handle.on_frame(message)
            elif message.kind in (wire.READY, wire.ERROR):
                self._greet(message)

    def _greet(self, message: wire.Frame) -> None:
        try:
            info = json.loads(message.payload) if message.kind == wire.READY else {}
            index = int(info["index"]) if message.kind == wire.READY else int(message.request_id)
            handle = self._handles[index]
        except (ValueError, KeyError, IndexError, TypeError):
            self._lose("a replica greeted with an unknown index")
            return
        if message.kind == wire.ERROR:
            handle.fail_start(message.payload.decode(errors="replace"))
            return
        assert self._transport is not None
        self._handle = handle
        handle.attach(self._transport, info)

    def _lose(self, reason: str) -> None:
        if self._handle is not None:
            self._handle.on_lost(reason)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handle is not None:
            self._handle.on_lost(f"connection closed{f' ({exc})' if exc else ''}")


def split_evenly(lengths: Sequence[int], parts: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges of about equal token counts (at least one window each)."""
    parts = max(1, min(parts, len(lengths)))
    if parts == 1:
        return [(0, len(lengths))]
    cumulative = np.cumsum(lengths)
    targets = cumulative[-1] * np.arange(1, parts) / parts
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    bounds = sorted({0, *(min(int(c), len(lengths)) for c in cuts), len(lengths)})
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
