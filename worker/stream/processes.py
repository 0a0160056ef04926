"""How many stream processes ``ner-worker run`` starts (``NER_PROCESSES``; 0 = derived here).

One stream process parses, tokenizes, decodes and publishes at about one core's pace, which is
far below what a GPU engine scores; several processes sharing one engine (an engine host) keep
the GPU busy. The default leaves cores to the engine:

* the transformers engine on a CPU: **1**. The engine's matrix products already use every core;
  more stream processes would take cores from it and feed it no faster.
* an engine on a GPU (vLLM, or transformers on CUDA): **cores / 4**, at least 1. The engine host
  needs cores too (vLLM replicas about one each, plus the host's merging), and every stream
  process runs the tokenizer's threads beside its own loop.
* the remote engine (the model runs on another machine): **cores / 2**, at least 1.

"Cores" honours the CPU affinity and a container's CPU limit (cgroup v2 ``cpu.max``), not the
host's count; a pod without a CPU limit sees the node's cores, so a derived count is never above
``MAX_DERIVED``. These defaults are starting points: measure, then set ``NER_PROCESSES``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from worker.settings import Settings

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
MAX_DERIVED = 8


def process_count(settings: Settings, *, cores: int | None = None, gpu: bool | None = None) -> int:
    """``NER_PROCESSES``, or the default for this engine and machine (``cores``/``gpu``: measured
    here unless given)."""
    if settings.processes:
        return settings.processes
    cores = available_cores() if cores is None else cores
    if settings.engine == "remote":
        return max(1, min(MAX_DERIVED, cores // 2))
    on_gpu = settings.engine == "vllm" or settings.device == "cuda" or (
        settings.device == "auto" and (gpu_visible() if gpu is None else gpu))
    return max(1, min(MAX_DERIVED, cores // 4)) if on_gpu else 1


def available_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, lowered by a cgroup CPU quota if there is one."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit to read: the affinity stands
    return cores


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch (a container sees the device
    nodes of the GPUs it was given)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))
