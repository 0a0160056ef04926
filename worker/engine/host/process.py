"""The engine host program as a child of a supervisor (a multi-process ``run``, a benchmark, a test).

The host runs in its own session so that a Ctrl-C meant for the supervisor does not stop the
engine under stream processes that are still draining; the supervisor stops it last. It also
watches its parent and stops if the parent goes away, so a supervisor killed outright never
leaves a model loaded on the GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from worker.engine.base import EngineError
from worker.engine.host.client import HostedEngine

# The folder that holds the ``worker`` package: the host program imports it from there.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])


class EngineHostProcess:
    def __init__(self, *, socket_path: str | None = None, environ: Mapping[str, str] | None = None,
                 max_batch_tokens: int = 0, max_wait_ms: float | None = None, max_in_flight: int = 0,
                 drain_timeout_s: float = 30.0) -> None:
        """``environ`` (default: this process's) holds the ``NER_*`` settings of the engine;
        the batching arguments left at 0/None take the host program's defaults."""
        self._own_dir = tempfile.mkdtemp(prefix="ner-engine-") if socket_path is None else None  # 0700
        self.socket_path = socket_path or str(Path(self._own_dir or ".") / "engine.sock")
        self._environ = dict(os.environ if environ is None else environ)
        self._arguments = ["--socket", self.socket_path, "--drain-timeout-s", str(drain_timeout_s)]
        if max_batch_tokens:
            self._arguments += ["--max-batch-tokens", str(max_batch_tokens)]
        if max_wait_ms is not None:
            self._arguments += ["--max-wait-ms", str(max_wait_ms)]
        if max_in_flight:
            self._arguments += ["--max-in-flight", str(max_in_flight)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(self._environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.engine.host", *self._arguments, "--parent-pid", str(os.getpid())],
            env=env, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    async def wait_ready(self, engine: HostedEngine) -> None:
        """Start ``engine`` (a client of this host); fail at once if the host exits meanwhile."""
        starting = asyncio.create_task(engine.start())
        while not starting.done():
            if (code := self.exit_code()) is not None:
                starting.cancel()
                await engine.close()
                raise EngineError(f"the engine host (pid {self.pid}) exited with code {code} while starting")
            await asyncio.wait([starting], timeout=0.25)
        starting.result()

    async def stop(self, timeout_s: float = 40.0) -> int | None:
        """SIGTERM (the host drains its connected clients), then SIGKILL after ``timeout_s``; the exit code."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.process.wait, timeout_s)
        self.kill()
        if self.process is not None:
            await asyncio.to_thread(self.process.wait)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
        return self.exit_code()

    def kill(self) -> None:
        """SIGKILL the host's process group (a vLLM host's replicas see their socket close and exit)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
