"""Engine benchmark on a GPU: the worker path with vLLM (engine replicas) and with transformers,
next to the raw reference points, on the same documents. Writes JSON to --out.

    python3 bench/engine_bench.py all --workdir /tmp/nerbench --out bench/results --budget 540

Every measurement runs in a fresh subprocess (a clean GPU for each engine); ``all`` runs the
phases in order within the time budget, appends rows as they come and rewrites
``engine_bench.json`` after every phase, so a run cut short still leaves its results.

Phases (``--phases`` picks some, in the order given):
  prepare                 models (BERT-base and Qwen3-0.6B shapes, random weights) and documents
  vllm-worker-bert        VllmEngine with N replicas: engine only (1..N replicas in use), the
                          worker path on short and on long-mixed documents, latency at half load
  hf-worker-bert          the same worker path with the transformers engine on the GPU
  hf-raw-bert             tuned transformers loop over token ids (no worker)
  vllm-raw-bert           one vLLM engine, LLM.encode over token ids and over raw texts
  vllm-worker-qwen3, hf-worker-qwen3   the worker path with a decoder model
  vllm-hosted-bert, hf-hosted-bert     the worker path in --processes worker processes sharing one
                          engine through the engine host (what NER_PROCESSES runs)
  vllm-served-bert        the worker path with NER_ENGINE=remote against a real ``vllm serve``
  vllm-workers-bert, hf-workers-bert   the worker path in --processes worker processes sharing
                          the GPU (each with --replicas vLLM replicas of its own)
Documents: "short" = 20,000 documents of 64..192 tokens; "long-mix" = 4,000 documents of which
10 % have 2,000..8,000 tokens (several windows each for BERT).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _bench_report as report  # noqa: E402
from bench._models import build_bert, build_qwen3, calibrate_outside, make_texts, model_cost  # noqa: E402

PEAK_TFLOPS = float(os.environ.get("PEAK_TFLOPS", "790"))  # measured bf16 dense matmul rate (H100/H200)
PHASES = ["prepare", "vllm-worker-bert", "hf-worker-bert", "hf-raw-bert", "vllm-raw-bert",
          "vllm-worker-qwen3", "hf-worker-qwen3"]
MODELS = {"bert": "bert-base", "qwen3": "qwen3-0.6b"}


def log(*parts: Any) -> None:
    print(*parts, flush=True)


# --------------------------------------------------------------------------- data
def prepare(work: Path, models: list[str], smoke: bool) -> None:
    work.mkdir(parents=True, exist_ok=True)
    words: list[str] = []
    if "bert" in models and not (work / "bert-base" / "config.json").exists():
        words = build_bert(work / "bert-base", shape="tiny" if smoke else "base")
    if "qwen3" in models and not (work / "qwen3-0.6b" / "config.json").exists():
        words = build_qwen3(work / "qwen3-0.6b")  # same vocabulary (same seed): same tokens
    scale = 100 if smoke else 1  # --smoke: a quick run of the whole machinery on a CPU
    if words and not (work / "short.jsonl").exists():
        for name, count, fraction in (("short", 20_000 // scale, 0.0), ("long-mix", 4_000 // scale, 0.1)):
            texts = make_texts(words, count, tokens=(64, 192), seed=len(name), long_fraction=fraction)
            with open(work / f"{name}.jsonl", "w") as f:
                for i, text in enumerate(texts):
                    f.write(json.dumps({"id": f"{name}-{i}", "text": text}) + "\n")
            if name == "short":
                for model in models:
                    shift = calibrate_outside(work / MODELS[model], texts[:200])
                    log(f"{model}: 'O' bias shifted by {shift:.3f} for 85 % of tokens outside entities")


def load_values(work: Path, name: str) -> list[bytes]:
    return [line.rstrip(b"\n") for line in (work / f"{name}.jsonl").open("rb")]


def settings_for(engine: str, model: str, work: Path, replicas: int, smoke: bool, eager: bool = False) -> Any:
    """vLLM compiled (torch.compile and piecewise CUDA graphs), as the worker runs it by
    default; ``eager``: in eager mode instead."""
    from worker.settings import Settings

    qwen = model == "qwen3"
    return Settings(
        engine="vllm" if engine == "vllm" else "hf", model=str(work / MODELS[model]),
        device="cpu" if smoke else "cuda", dtype="float32" if smoke else "bfloat16",
        max_length=8192 if qwen else 0, stride=32, engine_replicas=replicas,
        vllm_max_model_len=8192 if qwen else 0, max_batch_tokens=65536 if qwen else 131072,
        max_document_tokens=65536, vllm_enforce_eager=eager,
    )


def cost_of(work: Path, model: str) -> dict[str, float]:
    from transformers import AutoConfig

    return model_cost(AutoConfig.from_pretrained(str(work / MODELS[model])))


# --------------------------------------------------------------------------- phases
def phase_raw(work: Path, engine: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench._raw import hf_loop, vllm_one_engine
    from worker.text.tokenize import DocumentTokenizer, EncodedText

    model_dir = str(work / "bert-base")
    values = load_values(work, "short")
    texts = [json.loads(v)["text"] for v in values]
    tokenizer = DocumentTokenizer.from_pretrained(model_dir)
    ids = [e.windows[0] for e in tokenizer.encode(texts) if isinstance(e, EncodedText)]
    lengths = [len(i) for i in ids]
    cost = cost_of(work, "bert")
    rows = []
    if engine == "transformers":
        for r in hf_loop(model_dir, ids, batch_sizes=[256, 1024], repeats=args.repeats,
                         device="cpu" if args.smoke else "cuda"):
            rows.append(report.row("transformers", "raw loop", "bert", "short", r["times"], lengths, cost,
                                   PEAK_TFLOPS, {"batch_size": r["batch_size"], "inputs": "token ids",
                                                 "loop": "sorted+padded, SDPA, bf16"}, count=len(ids)))
    else:
        info, results = vllm_one_engine(model_dir, ids, texts[:5000], repeats=args.repeats,
                                        max_num_batched_tokens=65536, max_num_seqs=1024)
        for r in results:
            n = r["docs"]
            rows.append(report.row("vllm", "raw LLM.encode, one engine", "bert", "short", r["times"], lengths[:n],
                                   cost, PEAK_TFLOPS, {"inputs": r["inputs"], "replicas": 1, "enforce_eager": True,
                                                       "max_num_batched_tokens": 65536, "max_num_seqs": 1024, **info},
                                   count=n))
    return rows


async def phase_worker(work: Path, engine_name: str, model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench._cpu_split import GpuSampler, cores_used, host_cpu_seconds
    from bench._worker_path import LATENCY_MAX_WAIT_S, latency, throughput
    from worker.annotator import Annotator
    from worker.engine.hf import TransformersEngine
    from worker.engine.vllm.engine import VllmEngine

    settings = settings_for("vllm" if engine_name == "vllm" else "hf", model, work, args.replicas, args.smoke,
                            args.eager)
    started = time.perf_counter()
    engine: Any = (VllmEngine.from_settings(settings) if engine_name == "vllm"
                   else TransformersEngine.from_settings(settings))
    await engine.start()
    start_s = time.perf_counter() - started
    log(f"{engine_name} engine up in {start_s:.1f} s")
    annotator = Annotator.from_settings(settings, engine)
    vllm = engine_name == "vllm"
    batch_docs = args.batch_docs or (256 if vllm else 1024)
    concurrency = args.concurrency or (4 * args.replicas if vllm else 2)
    common = {"replicas": args.replicas if vllm else None, "batch_docs": batch_docs, "concurrency": concurrency,
              "engine_start_s": round(start_s, 1), "dtype": settings.dtype,
              "max_length": annotator.tokenizer.max_length,
              **({"max_num_batched_tokens": settings.vllm_max_num_batched_tokens,
                  "max_num_seqs": settings.vllm_max_num_seqs, "enforce_eager": settings.vllm_enforce_eager,
                  "gpu_memory_utilization": settings.vllm_gpu_memory_utilization} if vllm
                 else {"micro_batch_tokens": settings.max_batch_tokens})}
    cost = cost_of(work, model)
    rows: list[dict[str, Any]] = []
    try:
        short = load_values(work, "short")
        windows = [w for e in annotator.tokenize([json.loads(v)["text"] for v in short]) for w in e.windows]  # type: ignore[union-attr]
        lengths = [len(w) for w in windows]
        await throughput(annotator, settings, short[:3000], batch_docs=batch_docs, concurrency=concurrency)  # warm-up
        if model == "bert":  # the engine alone, token ids ready: how far the replicas scale
            for active in ([k for k in (1, 2, 4, 8, 12, 16) if k < args.replicas] + [args.replicas]) if vllm else [1]:
                if vllm:
                    engine.use_replicas(active)
                before = host_cpu_seconds(os.getpid())
                t0 = time.perf_counter()
                chunks = [windows[i : i + 512] for i in range(0, len(windows), 512)]
                with GpuSampler() as gpu:
                    await asyncio.gather(*(engine.classify(c) for c in chunks))
                seconds = time.perf_counter() - t0
                # This process drives the engine ("engine host"), its replicas are its children.
                split = {"cores": cores_used(before, host_cpu_seconds(os.getpid()), seconds),
                         "cores_on_machine": os.cpu_count(), "gpu_busy_percent": gpu.mean()}
                rows.append(report.row(engine_name, "engine only", model, "short", [seconds],
                                       lengths, cost, PEAK_TFLOPS,
                                       {**common, "replicas": active if vllm else None, **split}, count=len(short)))
                log(report.line(rows[-1]), split)
            if vllm:
                engine.use_replicas(None)
        if args.skip_worker_path:
            return rows
        result = await throughput(annotator, settings, short, batch_docs=batch_docs, concurrency=concurrency)
        rows.append(report.row(engine_name, "worker path", model, "short", [result["seconds"]], lengths, cost,
                               PEAK_TFLOPS, {**common, "cpu_us_per_doc": result["cpu_us_per_doc"]}, count=len(short)))
        log(report.line(rows[-1]))
        half = 0.5 * result["docs_per_s"]
        timing = await latency(annotator, settings, short, rate=half, seconds=args.latency_seconds,
                               batch_docs=batch_docs, max_wait_s=LATENCY_MAX_WAIT_S, concurrency=concurrency)
        rows[-1]["latency_at_half_load"] = timing
        log(f"  latency at {half:.0f} docs/s: p50 {timing['p50_ms']:.1f} ms, p99 {timing['p99_ms']:.1f} ms")
        mixed = load_values(work, "long-mix")
        mixed_windows = [w for e in annotator.tokenize([json.loads(v)["text"] for v in mixed]) for w in e.windows]  # type: ignore[union-attr]
        result = await throughput(annotator, settings, mixed, batch_docs=max(16, batch_docs // 4),
                                  concurrency=concurrency)
        rows.append(report.row(engine_name, "worker path", model, "long-mix", [result["seconds"]],
                               [len(w) for w in mixed_windows], cost, PEAK_TFLOPS,
                               {**common, "batch_docs": max(16, batch_docs // 4),
                                "cpu_us_per_doc": result["cpu_us_per_doc"]}, count=len(mixed)))
        log(report.line(rows[-1]))
        if args.profile_dir:
            await report.profile_worker_path(annotator, settings, short[:4000], batch_docs, concurrency,
                                       Path(args.profile_dir) / f"profile-{engine_name}-{model}.txt")
    finally:
        await engine.close()
    return rows


def phase_workers(work: Path, engine_name: str, model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """--processes worker processes, each with an engine of its own sharing the GPU."""
    from bench._shards import run_sharded

    vllm = engine_name == "vllm"
    common = _shard_arguments(work, engine_name, model, args)
    results, _ = run_sharded(__file__, common, args.processes, timeout_s=args.shard_timeout)
    extra = {"replicas": args.replicas * args.processes if vllm else None,
             "replicas_per_process": args.replicas if vllm else None}
    return [_sharded_row(work, engine_name, model, args, results, f"worker path, {args.processes} processes", extra)]


@dataclass(frozen=True)
class HostedRun:
    """One run against the engine host: ``processes`` worker processes with ``concurrency`` batches
    in flight each, ``threads`` tokenizer threads each (0: the tokenizer's default), and either the
    whole worker path or the engine alone (token ids ready)."""

    processes: int
    concurrency: int
    threads: int
    engine_only: bool

    @classmethod
    def parse(cls, text: str) -> HostedRun:
        match = re.fullmatch(r"p(\d+)c(\d+)(?:t(\d+))?(e?)", text)
        if match is None:
            raise ValueError(f"a hosted run is pPROCESSEScCONCURRENCY[tTHREADS][e], not {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3] or 0), match[4] == "e")


def phase_hosted(work: Path, engine_name: str, model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Worker processes sharing ONE engine through the engine host, as ``NER_PROCESSES`` runs
    them: one copy of the model, batches merged across processes. The host starts once and
    serves every run of ``--hosted-runs``; each row says which cores went where."""
    from worker.engine.host import EngineHostProcess, HostedEngine

    settings = settings_for(engine_name, model, work, args.replicas, args.smoke, args.eager)
    host = EngineHostProcess(environ={**os.environ, **settings_env(settings)}, max_in_flight=args.host_in_flight)
    started = time.perf_counter()
    host.start()
    try:
        probe = HostedEngine.from_settings(settings, host.socket_path)
        asyncio.run(_host_up(host, probe))
        extra = {"replicas": args.replicas if engine_name == "vllm" else None, "engine_host": True,
                 "vllm_enforce_eager": settings.vllm_enforce_eager,
                 "host_start_s": round(time.perf_counter() - started, 1), "host_max_in_flight": args.host_in_flight}
        return [_measure_run(work, model, args, HostedRun.parse(text), engine_name=engine_name,
                             engine_label=engine_name, target=["--hosted", host.socket_path], root_pid=host.pid or 0,
                             roles={}, where="one engine host", extra=extra)
                for text in args.hosted_runs.split(",")]
    finally:
        asyncio.run(host.stop())


def phase_served(work: Path, model: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The worker path with ``NER_ENGINE=remote`` against a real ``vllm serve`` (one vLLM engine
    behind vLLM's own API server), in the worker processes of each ``--served-runs`` run."""
    from bench._vllm_serve import VllmServer

    started = time.perf_counter()
    rows = []
    server = VllmServer(str(work / MODELS[model]), dtype="float32" if args.smoke else "bfloat16",
                        gpu_memory_utilization=0.8,
                        extra=["--max-num-batched-tokens", "65536", "--max-num-seqs", "1024",
                               *(["--enforce-eager"] if args.eager else [])])
    try:
        with server:
            extra = {"engine": "remote", "server": "vllm serve --runner pooling",
                     "server_start_s": round(time.perf_counter() - started, 1),
                     "vllm_enforce_eager": args.eager}
            roles = {"engine host": "vllm serve (API server)", "engine replicas": "vllm serve (engine core)"}
            for text in args.served_runs.split(","):
                run = HostedRun.parse(text)
                try:
                    rows.append(_measure_run(work, model, args, run, engine_name="vllm",
                                             engine_label="remote (vllm serve)", target=["--remote", server.url],
                                             root_pid=server.process.pid if server.process else 0, roles=roles,
                                             where="vllm serve", extra=extra))
                except RuntimeError as exc:  # a run that failed leaves the others (and the server's log) to read
                    log(f"  run {run} failed: {exc}")
    finally:
        if args.profile_dir and server.log_path.exists():
            shutil.copy(server.log_path, Path(args.profile_dir) / "vllm-serve.log")
    return rows


def _measure_run(work: Path, model: str, args: argparse.Namespace, run: HostedRun, *, engine_name: str,
                 engine_label: str, target: list[str], root_pid: int, roles: dict[str, str], where: str,
                 extra: dict[str, Any]) -> dict[str, Any]:
    """One run of worker processes against a shared engine (``target``: the shard arguments that
    name it), with the cores of the engine's process tree rooted at ``root_pid`` (its roles
    renamed by ``roles``) and of the worker processes, and the GPU's busy time."""
    from bench._cpu_split import GpuSampler, cores_used, host_cpu_seconds
    from bench._shards import run_sharded

    common = [*_shard_arguments(work, engine_name, model, args, concurrency=run.concurrency), *target,
              "--passes", str(args.passes), *(["--engine-only"] if run.engine_only else [])]
    env = {"RAYON_NUM_THREADS": str(run.threads)} if run.threads else {}
    with GpuSampler() as gpu:
        results, span = run_sharded(__file__, common, run.processes, timeout_s=args.shard_timeout, env=env,
                                    reading=lambda: host_cpu_seconds(root_pid))
    measured = cores_used(span["cpu_before"], span["cpu_after"], span["wall_s"])
    cores = {roles.get(name, name): value for name, value in measured.items()}
    # The worker processes count their own CPU (they may exit before the last reading).
    cores["stream processes"] = round(sum(r["cpu_s"] for r in results) / span["wall_s"], 2)
    what = "engine only" if run.engine_only else "worker path"
    row = _sharded_row(work, engine_name, model, args, results, f"{what}, {run.processes} processes, {where}",
                       {**extra, "tokenizer_threads": run.threads or "default", "passes": args.passes,
                        "cores": cores, "cores_on_machine": os.cpu_count(), "gpu_busy_percent": gpu.mean()},
                       processes=run.processes, concurrency=run.concurrency, label=engine_label)
    log(f"  cores: {cores}, GPU busy {gpu.mean()} %")
    if args.latency and not run.engine_only:
        row["latency_at_half_load"] = _half_load_latency(common, run, row["docs_per_s"], args)
    return row


def _half_load_latency(common: list[str], run: HostedRun, docs_per_s: float,
                       args: argparse.Namespace) -> dict[str, Any]:
    """The same worker processes, records arriving at half the rate they reached: each record's
    time from its arrival to its output, over every process."""
    import numpy as np

    from bench._shards import run_sharded
    from bench._worker_path import LATENCY_MAX_WAIT_S, latency_summary

    rate = 0.5 * docs_per_s
    env = {"RAYON_NUM_THREADS": str(run.threads)} if run.threads else {}
    results, _ = run_sharded(__file__, [*common, "--latency-rate", str(rate / run.processes)], run.processes,
                             timeout_s=args.shard_timeout, env=env)
    samples = np.sort(np.array([ms for r in results for ms in r["latencies_ms"]])) / 1e3
    timing = {"rate_docs_per_s": round(rate), "docs": int(samples.size), "seconds": args.latency_seconds,
              **{k: round(v, 2) for k, v in latency_summary(samples).items()},
              "max_wait_ms": LATENCY_MAX_WAIT_S * 1e3, "processes": run.processes}
    log(f"  latency at {rate:.0f} docs/s: p50 {timing['p50_ms']:.1f} ms, p99 {timing['p99_ms']:.1f} ms")
    return timing


async def _host_up(host: Any, probe: Any) -> None:
    await host.wait_ready(probe)
    await probe.close()


def settings_env(settings: Any) -> dict[str, str]:
    """The ``NER_*`` variables that give another process these settings (the engine host)."""
    from worker.settings import env_name, setting_fields
    from worker.settings_page import env_text

    return {env_name(f.name): env_text(getattr(settings, f.name)) for f in setting_fields()
            if getattr(settings, f.name) not in (f.default, None)}


def _shard_arguments(work: Path, engine_name: str, model: str, args: argparse.Namespace, *,
                     concurrency: int = 0) -> list[str]:
    vllm = engine_name == "vllm"
    batch_docs = args.batch_docs or (256 if vllm else 512)
    concurrency = concurrency or args.concurrency or (4 * args.replicas if vllm else 2)
    return ["--workdir", str(work), "--engine", engine_name, "--model", model, "--replicas", str(args.replicas),
            "--batch-docs", str(batch_docs), "--concurrency", str(concurrency)] + (["--smoke"] if args.smoke else [])


def _sharded_row(work: Path, engine_name: str, model: str, args: argparse.Namespace, results: list[dict[str, Any]],
                 path: str, extra: dict[str, Any], *, processes: int = 0, concurrency: int = 0,
                 label: str = "") -> dict[str, Any]:
    """One row for all processes: every document over the span from the first start to the last finish
    (``label``: the row's engine, where it is not ``engine_name``, the engine the shards were told)."""
    seconds = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    lengths = [n for r in results for n in r["lengths"]]
    stages = results[0]["cpu_us_per_doc"]
    cpu = {k: round(sum(r["cpu_us_per_doc"][k] for r in results) / len(results), 2) for k in stages}
    docs = sum(r["docs"] for r in results)
    common = _shard_arguments(work, engine_name, model, args, concurrency=concurrency)
    settings = {"processes": processes or args.processes, **extra,
                "batch_docs": int(common[common.index("--batch-docs") + 1]),
                "concurrency": int(common[common.index("--concurrency") + 1]), "cpu_us_per_doc": cpu,
                "stream_cpu_us_per_doc": round(sum(r.get("cpu_s", 0.0) for r in results) / docs * 1e6, 1),
                "dtype": "bfloat16", "engine_start_s": round(max(r["engine_start_s"] for r in results), 1)}
    row = report.row(label or engine_name, path, model, "short", [seconds], lengths, cost_of(work, model),
                     PEAK_TFLOPS, settings, count=docs)
    log(report.line(row))
    return row


def run_shard(args: argparse.Namespace) -> None:
    from bench._shards import shard

    settings = settings_for(args.engine, args.model, Path(args.workdir), args.replicas, args.smoke)
    settings = dataclasses.replace(settings, vllm_gpu_memory_utilization=0.8 / args.processes)
    asyncio.run(shard(args, settings))


def run_phase(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    name = args.name
    if name == "prepare":
        prepare(work, args.models, args.smoke)
        return
    engine, kind, model = name.split("-")
    if kind == "workers":
        rows = phase_workers(work, "vllm" if engine == "vllm" else "transformers", model, args)
    elif kind == "served":
        rows = phase_served(work, model, args)
    elif kind == "hosted":
        rows = phase_hosted(work, "vllm" if engine == "vllm" else "transformers", model, args)
    elif kind == "raw":
        rows = phase_raw(work, "vllm" if engine == "vllm" else "transformers", args)
    else:
        rows = asyncio.run(phase_worker(work, "vllm" if engine == "vllm" else "transformers", model, args))
    with open(work / "rows.jsonl", "a") as f:
        for r in rows:
            f.write(json.dumps({"phase": name, **r}) + "\n")


def run_all(args: argparse.Namespace) -> None:
    work, out = Path(args.workdir), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget
    phases = args.phases or PHASES
    if phases[0] != "prepare":
        phases = ["prepare", *phases]
    models = sorted({p.rsplit("-", 1)[-1] for p in phases if p != "prepare"})
    meta = report.environment()
    meta["settings"] = {"budget_s": args.budget, "replicas": args.replicas, "peak_tflops": PEAK_TFLOPS}
    for name in phases:
        left = deadline - time.time()
        if left < 30:
            log(f"SKIP (time budget): {name}")
            continue
        log(f"=== {name} ({left:.0f} s left)")
        replicas = args.shard_replicas if "-workers-" in name else args.replicas
        command = [sys.executable, __file__, "phase", name, "--workdir", str(work), "--replicas", str(replicas),
                   "--repeats", str(args.repeats), "--latency-seconds", str(args.latency_seconds),
                   "--processes", str(args.processes), "--passes", str(args.passes),
                   "--hosted-runs", args.hosted_runs, "--served-runs", args.served_runs,
                   "--host-in-flight", str(args.host_in_flight),
                   *(["--skip-worker-path"] if args.skip_worker_path else []),
                   *(["--latency"] if args.latency else []),
                   *(["--eager"] if args.eager else []),
                   "--models", *models, "--profile-dir", str(out)] + (["--smoke"] if args.smoke else [])
        if args.batch_docs:
            command += ["--batch-docs", str(args.batch_docs)]
        code: int | str
        try:
            code = subprocess.run(command, timeout=left, check=False).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        if code != 0:
            log(f"phase {name} ended with {code}")
        report.write(out / args.result_name, meta, work / "rows.jsonl")
    report.print_table(work / "rows.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("all", "phase", "shard"):
        p = sub.add_parser(command)
        if command == "phase":
            p.add_argument("name")
        if command == "shard":
            p.add_argument("--engine", required=True)
            p.add_argument("--model", required=True)
            p.add_argument("--index", type=int, required=True)
            p.add_argument("--sync", required=True)
            p.add_argument("--hosted", default="", help="socket of an engine host to use instead of an own engine")
            p.add_argument("--engine-only", action="store_true", help="token ids straight to the engine")
            p.add_argument("--remote", default="", help="URL of a vLLM API server to use instead of an own engine")
            p.add_argument("--latency-rate", type=float, default=0.0,
                           help="records per second arriving at this process: measure latency, not throughput")
        p.add_argument("--processes", type=int, default=4, help="worker processes of the *-workers-* phases")
        p.add_argument("--shard-replicas", type=int, default=2, help="vLLM replicas per worker process there")
        p.add_argument("--shard-timeout", type=float, default=400)
        p.add_argument("--skip-worker-path", action="store_true", help="*-worker-* phases: the engine-only rows only")
        p.add_argument("--eager", action="store_true",
                       help="vLLM in eager mode (enforce_eager), not compiled with CUDA graphs as the worker's default")
        p.add_argument("--passes", type=int, default=1, help="times each worker process goes through its share")
        p.add_argument("--hosted-runs", default="p4c8",
                       help="runs of the *-hosted-* phases: pPROCESSEScCONCURRENCY[tTHREADS][e], e = engine only")
        p.add_argument("--served-runs", default="p4c8", help="runs of the *-served-* phases, as --hosted-runs")
        p.add_argument("--host-in-flight", type=int, default=0,
                       help="the engine host's batches in flight (0: its default)")
        p.add_argument("--workdir", required=True)
        p.add_argument("--replicas", type=int, default=8)
        p.add_argument("--repeats", type=int, default=2)
        p.add_argument("--batch-docs", type=int, default=0)
        p.add_argument("--concurrency", type=int, default=0)
        p.add_argument("--latency-seconds", type=float, default=6.0)
        p.add_argument("--latency", action="store_true",
                       help="*-hosted-* phases: after each worker-path run, its latency at half the rate it reached")
        p.add_argument("--models", nargs="*", default=["bert", "qwen3"])
        p.add_argument("--profile-dir", default="")
        p.add_argument("--smoke", action="store_true", help="tiny model, 1 %% of the documents, CPU: checks the script")
        if command == "all":
            p.add_argument("--out", required=True)
            p.add_argument("--budget", type=float, default=540)
            p.add_argument("--phases", type=lambda s: s.split(","), default=None)
            p.add_argument("--result-name", default="engine_bench.json")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    {"all": run_all, "phase": run_phase, "shard": run_shard}[args.command](args)


if __name__ == "__main__":
    main()
