"""Engine host benchmark on the CPU: client processes each with an engine of their own
("in-process") against the same processes sharing one engine host ("hosted"), side by side in
one run, with the shipped model and the transformers engine.

    python3 bench/engine_host_bench.py --out bench/results/engine_host_cpu.json

Every client process sends ``--requests`` requests of ``--windows`` windows (``--tokens``
tokens each, wrapped in special tokens), ``--in-flight`` at a time, as a stream process sends
its engine batches; all processes start together once every one has its engine. Throughput = all tokens / (last answer
- start). The load average is recorded before and after every row: on a shared machine the
numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _bench_report as report  # noqa: E402
from worker.bundled_model import TINY_NER_PATH  # noqa: E402
from worker.engine.base import Engine  # noqa: E402
from worker.engine.hf import TransformersEngine  # noqa: E402
from worker.engine.host import EngineFacts, EngineHostProcess, HostedEngine  # noqa: E402

MODEL = str(TINY_NER_PATH)
WARM_UP_CALLS = 5


def make_requests(seed: int, requests: int, windows: int, tokens: int) -> list[list[list[int]]]:
    rng = random.Random(seed)
    return [[[101, *(rng.randrange(1000, 6000) for _ in range(tokens - 2)), 102] for _ in range(windows)]
            for _ in range(requests)]


async def _drive(engine: Engine, requests: list[list[list[int]]], in_flight: int,
                 barrier: Any) -> tuple[float, float]:
    await engine.start()
    for _ in range(WARM_UP_CALLS):  # a fresh engine's first forward passes are several times slower
        await engine.classify(requests[0])
    await asyncio.to_thread(barrier.wait)  # every process has loaded its engine or connected
    started = time.time()
    gate = asyncio.Semaphore(in_flight)

    async def one(windows: list[list[int]]) -> None:
        async with gate:
            await engine.classify(windows)

    try:
        await asyncio.gather(*(one(windows) for windows in requests))
        return started, time.time()
    finally:
        await engine.close()


def client(mode: str, socket_path: str, requests: list[list[list[int]]], in_flight: int,
           barrier: Any) -> tuple[float, float]:
    """One client process; the wall-clock times of its first request and its last answer."""
    engine: Engine
    if mode == "hosted":
        engine = HostedEngine(socket_path, EngineFacts.of(TransformersEngine(MODEL)), start_timeout_s=300)
    else:
        engine = TransformersEngine(MODEL, device="cpu")
    return asyncio.run(_drive(engine, requests, in_flight, barrier))


def measure(mode: str, processes: int, args: argparse.Namespace, socket_path: str) -> dict[str, Any]:
    shares = [make_requests(p, args.requests, args.windows, args.tokens) for p in range(processes)]
    tokens = sum(len(w) for share in shares for request in share for w in request)
    load_before = os.getloadavg()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        times = pool.starmap(client, [(mode, socket_path, share, args.in_flight, barrier) for share in shares])
    seconds = max(end for _, end in times) - min(start for start, _ in times)
    return {"mode": mode, "client_processes": processes, "tokens": tokens, "seconds": round(seconds, 3),
            "tok_per_s": round(tokens / seconds), "load_average_before": load_before,
            "load_average_after": os.getloadavg()}


async def _host_stats(host: EngineHostProcess) -> dict[str, int]:
    engine = HostedEngine(host.socket_path, EngineFacts.of(TransformersEngine(MODEL)), start_timeout_s=300)
    await host.wait_ready(engine)
    try:
        return await engine.host_stats()
    finally:
        await engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine_host_cpu.json")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    host = EngineHostProcess(environ={**os.environ, "NER_ENGINE": "hf", "NER_MODEL": MODEL, "NER_DEVICE": "cpu"})
    host.start()
    try:
        asyncio.run(_host_stats(host))  # loaded before the first row
        for processes in args.processes:
            for mode in ("in-process", "hosted"):
                before = asyncio.run(_host_stats(host)) if mode == "hosted" else {}
                row = measure(mode, processes, args, host.socket_path)
                if mode == "hosted":
                    after = asyncio.run(_host_stats(host))
                    row["host_requests"] = after["requests"] - before["requests"]
                    row["host_batches"] = after["batches"] - before["batches"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        asyncio.run(host.stop(timeout_s=10))
    settings = {k: getattr(args, k) for k in ("requests", "windows", "tokens", "in_flight")}
    args.out.write_text(json.dumps({**report.environment(), "model": "tiny-ner (shipped)", "engine": "hf (cpu)",
                                    "settings": settings, "rows": rows}, indent=1) + "\n")
    print(f"\n{'mode':<12}{'procs':>6}{'tok/s':>10}{'batches/requests':>18}{'load before':>22}")
    for r in rows:
        merged = f"{r['host_batches']}/{r['host_requests']}" if "host_batches" in r else ""
        print(f"{r['mode']:<12}{r['client_processes']:>6}{r['tok_per_s']:>10}{merged:>18}"
              f"{' '.join(f'{x:.2f}' for x in r['load_average_before']):>22}")


if __name__ == "__main__":
    main()
