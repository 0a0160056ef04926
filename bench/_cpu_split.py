"""Where a run's cores go: CPU seconds per role from /proc, and the GPU's busy fraction.

Two roles are read here (threads count inside their process): "engine host" (the host program
alone) and "engine replicas" (everything the host started); the benchmark's worker processes
count their own. Reading them before and after a run gives the cores each role used over it, so a
run says which resource is the wall without a profiler: a role at its core count is CPU-bound, a
GPU near 100 % busy is not.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _table() -> dict[int, tuple[int, float]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            table[int(entry)] = stat
    return table


def _descendants(table: Mapping[int, tuple[int, float]], roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def host_cpu_seconds(host_pid: int) -> dict[str, float]:
    """CPU seconds so far of an engine host: the host program alone ("engine host"), and everything
    it started, its replicas and their engine cores ("engine replicas"); one read of /proc."""
    table = _table()
    host = table.get(host_pid)
    return {"engine host": host[1] if host else 0.0,
            "engine replicas": sum(table[pid][1] for pid in _descendants(table, [host_pid]))}


class GpuSampler:
    """Samples the GPU's busy fraction (NVML's utilization.gpu) every ``interval_s`` in a thread;
    ``mean()`` is None where NVML is missing (no GPU, or the package is not installed)."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self._interval_s = interval_s
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: object | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML: the rows simply carry no GPU figure
            self._handle = None

    def __enter__(self) -> GpuSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._samples.append(int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))

    def mean(self) -> float | None:
        return round(sum(self._samples) / len(self._samples), 1) if self._samples else None


def cores_used(before: Mapping[str, float], after: Mapping[str, float], seconds: float) -> dict[str, float]:
    """Cores each role kept busy on average between two readings ``seconds`` apart."""
    return {name: round((after[name] - before.get(name, 0.0)) / seconds, 2) for name in after}
