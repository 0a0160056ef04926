"""The worker path in several processes sharing one GPU (several workers per GPU).

One worker process tokenizes, decodes and serializes on one core; the GPU can take several
times that. Running P worker processes per GPU (each its own engine; for vLLM with R replicas
of its own, ``vllm_gpu_memory_utilization / P`` of the memory) spreads that CPU work, as P pods
or containers sharing a GPU would. Each process takes every P-th document; all start together
once every engine is up; the rate is all documents over the span from the first start to the
last finish.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Reading = Callable[[], Mapping[str, float]]
"""CPU seconds per role so far (see ``bench._cpu_split``)."""


def run_sharded(script: str, common: list[str], processes: int, timeout_s: float, *,
                env: Mapping[str, str] | None = None,
                reading: Reading | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Start ``processes`` shard programs, release them together; their results, and the span's
    wall time with ``reading`` taken at the release and after the last result (the cores split)."""
    sync = Path(tempfile.mkdtemp(prefix="shards-"))
    children = [subprocess.Popen([sys.executable, script, "shard", *common, "--index", str(i),
                                  "--processes", str(processes), "--sync", str(sync)],
                                 env={**os.environ, **(env or {})}) for i in range(processes)]
    deadline = time.time() + timeout_s
    try:
        while sum((sync / f"ready.{i}").exists() for i in range(processes)) < processes:
            if time.time() > deadline or any(c.poll() not in (None, 0) for c in children):
                raise RuntimeError("not every worker process came up")
            time.sleep(0.05)
        before = dict(reading()) if reading else {}
        released = time.time()
        (sync / "go").touch()
        while sum((sync / f"result.{i}").exists() for i in range(processes)) < processes:
            if time.time() > deadline or any(c.poll() not in (None, 0) for c in children):
                raise RuntimeError("not every worker process finished")
            time.sleep(0.02)
        after = dict(reading()) if reading else {}
        span = {"wall_s": time.time() - released, "cpu_before": before, "cpu_after": after}
        return [json.loads((sync / f"result.{i}").read_text()) for i in range(processes)], span
    finally:
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


async def shard(args: argparse.Namespace, settings: Any) -> None:
    """One worker process: its engine, its share of the documents, released by the "go" file."""
    from bench._worker_path import LATENCY_MAX_WAIT_S, latency_samples, throughput
    from worker.annotator import Annotator
    from worker.engine.hf import TransformersEngine
    from worker.engine.vllm.engine import VllmEngine

    engine: Any
    if args.hosted:  # one engine for every process, served by the engine host
        from worker.engine.host import HostedEngine

        engine = HostedEngine.from_settings(settings, args.hosted)
    elif args.remote:  # a vLLM API server (NER_ENGINE=remote)
        from worker.engine.remote import RemoteEngine

        # Requests of ~16k tokens (~128 short windows), not the in-process engines' 128k batches.
        remote = dataclasses.replace(settings, engine="remote", remote_url=args.remote, max_batch_tokens=16384)
        engine = RemoteEngine.from_settings(remote)
    else:
        engine = VllmEngine.from_settings(settings) if settings.engine == "vllm" else (
            TransformersEngine.from_settings(settings))
    started = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - started
    annotator = Annotator.from_settings(settings, engine)
    sync = Path(args.sync)
    values = [line.rstrip(b"\n") for line in (Path(args.workdir) / "short.jsonl").open("rb")]
    mine = values[args.index :: args.processes]
    texts = [json.loads(v)["text"] for v in mine]
    windows = [w for e in annotator.tokenize(texts) for w in e.windows]  # type: ignore[union-attr]
    # --passes: the share again and again, so that a run lasts long enough to leave the ramp-up
    # (every process tokenizing its first batches while the engine waits) out of the rate.
    lengths = [len(w) for w in windows] * args.passes
    try:
        await throughput(annotator, settings, mine[:1500], batch_docs=args.batch_docs, concurrency=args.concurrency)
        (sync / f"ready.{args.index}").touch()
        while not (sync / "go").exists():
            await asyncio.sleep(0.005)
        t0 = time.time()
        cpu0 = time.process_time()
        latencies_ms: list[float] = []
        if args.engine_only:  # token ids ready: what the engine (host) takes with no worker work around it
            result = await engine_only(engine, windows * args.passes, args.batch_docs, args.concurrency)
        elif args.latency_rate:  # records arriving at this process's share of a steady rate
            samples = await latency_samples(annotator, settings, mine * args.passes, rate=args.latency_rate,
                                            seconds=args.latency_seconds, batch_docs=args.batch_docs,
                                            max_wait_s=LATENCY_MAX_WAIT_S, concurrency=args.concurrency)
            result, latencies_ms = {"cpu_us_per_doc": {}}, [round(float(x) * 1e3, 2) for x in samples]
        else:
            result = await throughput(annotator, settings, mine * args.passes, batch_docs=args.batch_docs,
                                      concurrency=args.concurrency)
        t1 = time.time()
        record = {"t0": t0, "t1": t1, "docs": len(mine) * args.passes, "lengths": lengths,
                  "engine_start_s": start_s, "cpu_s": time.process_time() - cpu0,
                  "cpu_us_per_doc": result["cpu_us_per_doc"], "pid": os.getpid(), "latencies_ms": latencies_ms}
        (sync / f"result.{args.index}.tmp").write_text(json.dumps(record))
        (sync / f"result.{args.index}.tmp").rename(sync / f"result.{args.index}")
    finally:
        await engine.close()


async def engine_only(engine: Any, windows: list[list[int]], batch: int, concurrency: int) -> dict[str, Any]:
    """Every window through ``engine.classify`` in batches of ``batch``, ``concurrency`` at a time."""
    slots = asyncio.Semaphore(concurrency)

    async def one(chunk: list[list[int]]) -> None:
        async with slots:
            await engine.classify(chunk)

    await asyncio.gather(*(one(windows[i : i + batch]) for i in range(0, len(windows), batch)))
    return {"cpu_us_per_doc": {}}
