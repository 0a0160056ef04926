"""``ner-worker run`` with ``NER_PROCESSES`` = N > 1: one engine, N stream processes, one endpoint.

The supervisor starts the engine host (``worker.engine.host``: the engine loaded once, serving
every process's batches over a Unix socket) and waits until it is ready, then starts N stream
processes (``worker.stream.member``), each an ordinary member of the consumer group with a
hosted engine. It alone serves ``/metrics`` (every process's series, merged from
prometheus_client's multiprocess files, and every process's ``process_*`` series read from
``/proc``, labelled ``process="supervisor"``, ``"engine-host"``, ``"stream-<i>"``), ``/healthz``
and ``/readyz`` (true only when the engine host and every stream process are). With the remote
engine there is no host: the model already runs elsewhere, and each process is its client.

Lifecycle:

* SIGTERM or SIGINT goes on to every stream process; each drains and commits within
  ``NER_DRAIN_TIMEOUT_S`` while the engine host still serves its last batches; the host stops last.
* A stream process that dies is **restarted**, up to ``MAX_RESTARTS`` within
  ``RESTART_WINDOW_S``; one more death stops the worker (exit 1). Why restart: the engine is
  the expensive part to bring back (a vLLM host loads and warms its replicas for minutes), the
  other processes are healthy, and nothing is lost: the dead process's uncommitted records are
  read again by whichever member gets its partitions, as for a pod that dies (exactly-once
  fences the dead process's transactions by their partition's transactional id). The bound
  turns a crash loop into a worker exit that Kubernetes shows (CrashLoopBackOff) rather than
  hiding it. A stream process that cannot start (exit 2 or 3: settings, broker, topics) stops
  the worker with that status, and one that the broker refused for good (a permission denied,
  a dead letter its topic will not take) stops it with exit 1, as one process would: restarting
  cannot help.
* The engine host dying fails every stream process's batches in flight (their engine-failure
  policy applies: retries, then a stop without committing) and makes ``/readyz`` false; the
  supervisor then stops the worker (exit 1) so that the pod restarts with a fresh engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

from worker import __version__
from worker.http import HealthServer
from worker.settings import Settings
from worker.signals import stop_on_signals
from worker.stream.command import EXIT_CANNOT_START, EXIT_REFUSED, EXIT_UNFINISHED
from worker.stream.member_status import MemberReport, read_report
from worker.stream.metrics import SupervisorMetrics

if TYPE_CHECKING:
    from worker.engine.host import EngineHostProcess, HostedEngine

log = logging.getLogger(__name__)

RESTART_WINDOW_S = 60.0
MAX_RESTARTS = 3
"""Restarts allowed within ``RESTART_WINDOW_S``; the next death stops the worker."""
_WATCH_INTERVAL_S = 0.2
_STOP_MARGIN_S = 15.0
"""Beyond ``NER_DRAIN_TIMEOUT_S``: a stream process's own shutdown margin plus closing its clients."""
_CANNOT_START = (2, EXIT_CANNOT_START)


class StreamProcess:
    """One stream process: started (and restarted) by the supervisor, reporting through a file."""

    def __init__(self, index: int, status_file: Path, env: dict[str, str], engine_socket: str) -> None:
        self.index = index
        self.status_file = status_file
        self._env = env
        self._engine_socket = engine_socket
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "worker.stream.member", "--index", str(self.index),
                "--status-file", str(self.status_file), "--parent-pid", str(os.getpid()),
                "--engine-socket", self._engine_socket]

    def start(self) -> None:
        self.status_file.unlink(missing_ok=True)  # a report of an earlier process is not this one's
        self.process = subprocess.Popen(self.command(), env=self._env, stdin=subprocess.DEVNULL)
        log.info("stream process %d started (pid %d)", self.index, self.process.pid)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def report(self) -> MemberReport | None:
        return read_report(self.status_file) if self.running() else None

    def readiness(self) -> dict[str, bool]:
        name = f"process_{self.index}"
        report = self.report()
        checks = {f"{name}_running": self.running(), f"{name}_reporting": report is not None and report.fresh}
        if report is not None:
            checks.update({f"{name}_{check}": ok for check, ok in report.readiness.items()})
        return checks

    def health(self) -> dict[str, bool]:
        """Empty while the process is not running or has not reported yet: the supervisor
        restarts a dead one, and a starting one is loading."""
        report = self.report()
        if report is None:
            return {}
        name = f"process_{self.index}"
        return {f"{name}_reporting": report.fresh, **{f"{name}_{check}": ok for check, ok in report.health.items()}}


class RestartBudget:
    """At most ``limit`` restarts within any ``window_s`` seconds."""

    def __init__(self, limit: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def take(self, now: float | None = None) -> bool:
        """Count one restart if the budget allows it; False (nothing counted) when it does not."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


RUN_DIR_PREFIX = "ner-worker-"
_PID_FILE = "supervisor.pid"


def sweep_stale_run_dirs(parent: Path) -> None:
    """Remove the run folders of supervisors that were killed outright (SIGKILL, OOM) before they
    could remove their own: a pod's /tmp outlives its container's restarts."""
    for folder in parent.glob(RUN_DIR_PREFIX + "*"):
        try:
            pid = int((folder / _PID_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours to judge (another user's, or being created)
        if not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class Supervisor:
    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        sweep_stale_run_dirs(Path(tempfile.gettempdir()))
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))  # 0700: metrics, reports, socket
        (self.run_dir / _PID_FILE).write_text(str(os.getpid()))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        (self.run_dir / "status").mkdir()
        self.metrics = SupervisorMetrics(self.metrics_dir, self.process_ids)
        self.metrics.info.info({"version": __version__, "engine": settings.engine, "model": settings.model})
        self.http = HealthServer(self.metrics.registry, health=self.health, readiness=self.readiness,
                                 host=settings.http_host, port=settings.http_port)
        # Every child writes its series to this folder; the supervisor's own stay in memory.
        self.env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self.host: EngineHostProcess | None = None
        self.engine: HostedEngine | None = None
        if settings.engine != "remote":
            from worker.engine.host import EngineHostProcess

            self.host = EngineHostProcess(socket_path=str(self.run_dir / "engine.sock"), environ=self.env,
                                          drain_timeout_s=settings.drain_timeout_s + _STOP_MARGIN_S)
        socket = self.host.socket_path if self.host is not None else ""
        self.members = [StreamProcess(index, self.run_dir / "status" / f"{index}.json", self.env, socket)
                        for index in range(1, count + 1)]
        self.restarts = RestartBudget()

    # --- probes ---------------------------------------------------------------------------

    def process_ids(self) -> dict[str, int]:
        """The pid of every process of this worker running now, by the name ``/metrics`` labels
        its ``process_*`` series with: ``supervisor``, ``engine-host``, ``stream-<i>``."""
        pids = {"supervisor": os.getpid()}
        if self.host is not None and self.host.pid is not None and self.host.exit_code() is None:
            pids["engine-host"] = self.host.pid
        pids.update({f"stream-{member.index}": member.pid for member in self.members if member.running()})
        return pids

    def readiness(self) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        if self.host is not None:
            checks["engine_host"] = (self.host.exit_code() is None and self.engine is not None
                                     and self.engine.ready())
        for member in self.members:
            checks.update(member.readiness())
        return checks

    def health(self) -> dict[str, bool]:
        checks = {"event_loop": True}
        for member in self.members:
            checks.update(member.health())
        return checks

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> int:
        """Until SIGTERM/SIGINT (or a failure that stops the worker); the exit status."""
        stop = asyncio.Event()
        stop_on_signals(stop)
        try:
            if self.settings.http_port:
                await self.http.start()
            if not await self._start_engine_host(stop):
                return EXIT_CANNOT_START if not stop.is_set() else 0
            if stop.is_set():
                return 0
            log.info("starting %d stream processes", len(self.members))
            for member in self.members:
                member.start()
            failure = await self._watch(stop)
            if failure is None:
                log.info("stop requested: every stream process drains and commits (at most %.1fs)",
                         self.settings.drain_timeout_s)
            codes = await self._stop_members()
            if failure is not None:
                return failure
            # Killed by the SIGTERM itself: it came before the process set its handlers, that
            # is before it read any record.
            return EXIT_UNFINISHED if any(code not in (0, -signal.SIGTERM) for code in codes) else 0
        finally:
            await self._stop_engine_host()
            await self.http.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)

    async def _start_engine_host(self, stop: asyncio.Event) -> bool:
        """Start the host and wait until its engine is ready (or a stop is requested); False if it failed."""
        if self.host is None:
            return True
        from worker.engine import EngineError
        from worker.engine.host import HostedEngine

        log.info("starting the engine host: engine %s with model %s", self.settings.engine, self.settings.model)
        try:
            # Reads the model's config (importing transformers: seconds): off the loop that answers probes.
            self.engine = await asyncio.to_thread(HostedEngine.from_settings, self.settings, self.host.socket_path)
        except Exception as exc:  # the model's config cannot be read
            log.error("cannot start: NER_MODEL=%s: the %s engine cannot load it: %s",
                      self.settings.model, self.settings.engine, exc)
            return False
        self.host.start()
        starting = asyncio.ensure_future(self.host.wait_ready(self.engine))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return True  # stopped while loading: nothing to drain
        try:
            starting.result()
        except EngineError as exc:
            log.error("cannot start: NER_MODEL=%s: the %s engine host failed: %s",
                      self.settings.model, self.settings.engine, exc)
            return False
        log.info("engine host ready (pid %s)", self.host.pid)
        return True

    async def _watch(self, stop: asyncio.Event) -> int | None:
        """Restart stream processes that die, until a stop is requested (None) or the worker
        must stop (its exit status)."""
        while not stop.is_set():
            if self.host is not None and (code := self.host.exit_code()) is not None:
                log.error("the engine host exited with code %s: stopping the worker", code)
                return EXIT_UNFINISHED
            for member in self.members:
                if (code := member.exit_code()) is None:
                    continue
                self.metrics.process_ended(member.pid)
                if code in _CANNOT_START:
                    log.error("stream process %d cannot start (exit %d): stopping the worker", member.index, code)
                    return code
                if code == EXIT_REFUSED:
                    log.error("stream process %d stopped on a refusal by the broker (its error above); a restart "
                              "would meet the same refusal: stopping the worker", member.index)
                    return EXIT_UNFINISHED
                if not self.restarts.take():
                    log.error("stream process %d exited with %s, the restart budget (%d within %.0fs) is spent: "
                              "stopping the worker", member.index, _describe(code), MAX_RESTARTS, RESTART_WINDOW_S)
                    return EXIT_UNFINISHED
                log.warning("stream process %d (pid %d) exited with %s: restarting it",
                            member.index, member.pid, _describe(code))
                member.start()
                self.metrics.restarts.inc()
            self.metrics.processes.set(sum(member.running() for member in self.members))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _WATCH_INTERVAL_S)
        return None

    async def _stop_members(self) -> list[int]:
        """SIGTERM every stream process, wait for them to drain; SIGKILL the ones past the limit."""
        for member in self.members:
            member.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.drain_timeout_s + _STOP_MARGIN_S
        while any(member.running() for member in self.members) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for member in self.members:
            if member.running():
                log.error("stream process %d did not stop in time: killing it", member.index)
                member.signal(signal.SIGKILL)
        codes = []
        for member in self.members:
            if member.process is not None:
                codes.append(await asyncio.to_thread(member.process.wait))
                self.metrics.process_ended(member.pid)
        self.metrics.processes.set(0)
        return codes

    async def _stop_engine_host(self) -> None:
        if self.engine is not None:
            await self.engine.close()
        if self.host is not None and self.host.pid is not None:
            code = await self.host.stop(timeout_s=_STOP_MARGIN_S)
            if code not in (0, None):
                log.warning("the engine host exited with code %s", code)


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
