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
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_sharded(script: str, common: list[str], processes: int, timeout_s: float) -> list[dict[str, Any]]:
    """Start ``processes`` shard programs, release them together, return their results."""
    sync = Path(tempfile.mkdtemp(prefix="shards-"))
    children = [subprocess.Popen([sys.executable, script, "shard", *common, "--index", str(i),
                                  "--processes", str(processes), "--sync", str(sync)]) for i in range(processes)]
    deadline = time.time() + timeout_s
    try:
        while sum((sync / f"ready.{i}").exists() for i in range(processes)) < processes:
            if time.time() > deadline or any(c.poll() not in (None, 0) for c in children):
                raise RuntimeError("not every worker process came up")
            time.sleep(0.05)
        (sync / "go").touch()
        while sum((sync / f"result.{i}").exists() for i in range(processes)) < processes:
            if time.time() > deadline or any(c.poll() not in (None, 0) for c in children):
                raise RuntimeError("not every worker process finished")
            time.sleep(0.05)
        return [json.loads((sync / f"result.{i}").read_text()) for i in range(processes)]
    finally:
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


async def shard(args: argparse.Namespace, settings: Any) -> None:
    """One worker process: its engine, its share of the documents, released by the "go" file."""
    from bench._worker_path import throughput
    from worker.annotator import Annotator
    from worker.engine.hf import TransformersEngine
    from worker.engine.vllm.engine import VllmEngine

    engine: Any
    if args.hosted:  # one engine for every process, served by the engine host
        from worker.engine.host import HostedEngine

        engine = HostedEngine.from_settings(settings, args.hosted)
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
    lengths = [len(w) for e in annotator.tokenize(texts) for w in e.windows]  # type: ignore[union-attr]
    try:
        await throughput(annotator, settings, mine[:1500], batch_docs=args.batch_docs, concurrency=args.concurrency)
        (sync / f"ready.{args.index}").touch()
        while not (sync / "go").exists():
            await asyncio.sleep(0.005)
        t0 = time.time()
        result = await throughput(annotator, settings, mine, batch_docs=args.batch_docs, concurrency=args.concurrency)
        t1 = time.time()
        record = {"t0": t0, "t1": t1, "docs": result["docs"], "lengths": lengths, "engine_start_s": start_s,
                  "cpu_us_per_doc": result["cpu_us_per_doc"], "pid": os.getpid()}
        (sync / f"result.{args.index}.tmp").write_text(json.dumps(record))
        (sync / f"result.{args.index}.tmp").rename(sync / f"result.{args.index}")
    finally:
        await engine.close()
