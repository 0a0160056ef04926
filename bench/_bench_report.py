"""Rows, the environment record, the result file and the printed table of the engine benchmark."""

from __future__ import annotations

import cProfile
import datetime
import importlib.metadata
import io
import json
import os
import platform
import pstats
import subprocess
from pathlib import Path
from typing import Any

from bench._models import useful_flops


def row(engine: str, path: str, model: str, docs: str, times: list[float], lengths: list[int],
        cost: dict[str, float], peak_tflops: float, settings: dict[str, Any], *, count: int) -> dict[str, Any]:
    """One measurement: the median of ``times`` over ``count`` documents whose windows have ``lengths`` tokens."""
    seconds = sorted(times)[len(times) // 2]
    tokens = sum(lengths)
    return {
        "engine": engine, "path": path, "model": model, "documents": docs, "settings": settings,
        "docs": count, "windows": len(lengths), "tokens": tokens, "seconds": round(seconds, 4), "all_seconds": times,
        "tok_per_s": round(tokens / seconds), "docs_per_s": round(count / seconds),
        "windows_per_s": round(len(lengths) / seconds),
        "mfu": round(useful_flops(lengths, cost) / seconds / (peak_tflops * 1e12), 4),
    }


def line(r: dict[str, Any]) -> str:
    s = r["settings"]
    replicas = f" x{s['replicas']}" if s.get("replicas") else ""
    docs = f"{r['docs_per_s']} docs/s"
    return (f"{r['engine']}{replicas} {r['path']} {r['model']} {r['documents']}: {r['tok_per_s'] / 1e6:.3f} M tok/s, "
            f"{docs}, MFU {100 * r['mfu']:.1f} %")


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in ("torch", "transformers", "tokenizers", "numpy", "vllm", "orjson"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    gpu = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "gpu": gpu,
            "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(), "versions": versions}


def _run(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except OSError:
        return ""


def write(path: Path, meta: dict[str, Any], rows_file: Path) -> None:
    rows = [json.loads(x) for x in rows_file.read_text().splitlines()] if rows_file.exists() else []
    path.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")


def print_table(rows_file: Path) -> None:
    rows = [json.loads(x) for x in rows_file.read_text().splitlines()] if rows_file.exists() else []
    print(f"\n{'engine':<13}{'path':<28}{'model':<11}{'docs':<9}{'repl':>5}{'M tok/s':>9}{'docs/s':>9}{'MFU':>7}"
          f"{'p50 ms':>8}{'p99 ms':>8}")
    for r in rows:
        lat = r.get("latency_at_half_load") or {}
        print(f"{r['engine']:<13}{r['path'][:27]:<28}{r['model']:<11}{r['documents']:<9}"
              f"{r['settings'].get('replicas') or '':>5}{r['tok_per_s'] / 1e6:>9.3f}{r['docs_per_s']:>9}"
              f"{100 * r['mfu']:>6.1f}%{lat.get('p50_ms', float('nan')):>8.1f}{lat.get('p99_ms', float('nan')):>8.1f}")


async def profile_worker_path(annotator: Any, settings: Any, values: list[bytes], batch_docs: int,
                              concurrency: int, path: Path) -> None:
    """cProfile of the event loop thread over a worker-path run: where the CPU time goes."""
    from bench._worker_path import throughput

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        await throughput(annotator, settings, values, batch_docs=batch_docs, concurrency=concurrency)
    finally:
        profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    path.write_text(buffer.getvalue())
