"""A real ``vllm serve`` (vLLM's OpenAI-compatible API server) for the remote engine, on a GPU.

    with VllmServer(model_dir, dtype="float32") as server:
        RemoteEngine(server.url, model_dir)...

The server is vLLM's own program (``python -m vllm.entrypoints.cli.main serve``) with
``--runner pooling``, so ``/pooling`` answers ``token_classify``; nothing of the project runs
in it. Its log goes to a file, printed when it fails to come up.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class VllmServer:
    def __init__(self, model: str, *, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.3,
                 extra: list[str] | None = None, start_timeout_s: float = 300.0) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkdtemp(prefix="vllm-serve-")) / "server.log"
        self.command = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model, "--runner", "pooling",
                        "--host", "127.0.0.1", "--port", str(self.port), "--dtype", dtype,
                        "--gpu-memory-utilization", str(gpu_memory_utilization), "--no-enable-prefix-caching",
                        "--disable-uvicorn-access-log", *(extra or [])]
        if dtype == "float32":
            # As the vLLM engine does (worker/engine/vllm/engine.py): float32 arithmetic in attention.
            self.command += ["--attention-backend", "FLEX_ATTENTION"]
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> VllmServer:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "VLLM_LOGGING_LEVEL": "INFO"}, start_new_session=True)
        deadline = time.time() + self.start_timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vllm serve did not answer /health within {self.start_timeout_s:.0f} s:\n"
                           f"{self.log_tail()}")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM the server's process group (its API server and engine core), SIGKILL after 30 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
