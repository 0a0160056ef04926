"""What one core of this machine costs per token in the fast tokenizer, alone and with every
other core busy doing the same: the floor under the worker path's CPU per document.

    python3 bench/tokenizer_cores.py --model DIR --documents FILE.jsonl --out RESULT.json

N processes (``--processes``, each N in turn) each encode the same documents with the model's
fast tokenizer (``encode_batch`` with offsets, batches of 256, its own threads off), released
together; each reports its CPU microseconds per token. With N at the machine's core count the
figure includes what sharing the cores costs (hyper-threads, memory bandwidth, clocks).
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per process: what we measure

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _bench_report as report  # noqa: E402

BATCH = 256


def _encode(model: str, texts: list[str], barrier: Any) -> dict[str, float]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(model) / "tokenizer.json"))
    tokenizer.encode_batch(texts[:BATCH], add_special_tokens=False)  # warm
    barrier.wait()
    cpu, wall, tokens = time.process_time(), time.perf_counter(), 0
    for start in range(0, len(texts), BATCH):
        tokens += sum(len(e.ids) for e in tokenizer.encode_batch(texts[start : start + BATCH],
                                                                 add_special_tokens=False))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_us_per_token": cpu / tokens * 1e6, "wall_us_per_token": wall / tokens * 1e6,
            "tokens_per_doc": tokens / len(texts), "chars_per_token": sum(map(len, texts)) / tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--documents", required=True, type=Path)
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in args.documents.open()][: args.count]
    rows = []
    context = multiprocessing.get_context("spawn")
    for processes in args.processes:
        with context.Manager() as manager, context.Pool(processes) as pool:
            barrier = manager.Barrier(processes)
            results = pool.starmap(_encode, [(args.model, texts, barrier)] * processes)
        row = {"processes": processes, "load_average": os.getloadavg(),
               **{k: round(sum(r[k] for r in results) / processes, 3) for k in results[0]}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({**report.environment(), "model": args.model, "documents": str(args.documents),
                                    "batch": BATCH, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
