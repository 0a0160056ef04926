"""Run the real ``ner-worker run`` as a child process against the test broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.fixtures.ports import free_port
from tests.fixtures.served import metric_total, wait_until_answering

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
        self.env.update({"NER_HTTP_HOST": "127.0.0.1", "NER_HTTP_PORT": str(self.port), **env})
        self.http_host = self.env["NER_HTTP_HOST"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        # A session of its own: kill() takes the worker's stream processes with it, as a pod's
        # container dies whole.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run"], env=self.env, cwd=REPO, stdout=log, stderr=log,
            start_new_session=True,
        )
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://{self.http_host}:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until_answering(self.process, f"http://{self.http_host}:{self.port}/readyz", what="worker", log=self.log,
                             timeout_s=timeout, interval_s=0.25)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return metric_total(self.get("/metrics")[1], name, labels)

    def terminate(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; returns the exit code and the seconds the worker took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the worker and every process of its session (its stream processes; an engine
        host has a session of its own and stops when its parent has gone)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def children(self, module: str) -> list[int]:
        """Pids of this worker's child processes running ``python -m <module>`` (stream processes:
        ``worker.stream.member``; the engine host: ``worker.engine.host``)."""
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
            if parent == self.process.pid and module.encode() in arguments:
                found.append(int(entry.name))
        return sorted(found)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""
