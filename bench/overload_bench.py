"""Backpressure under overload: producers ten times faster than the engine for five minutes.

Starts the real worker (shipped CPU model) on the local broker, measures its sustained rate,
then produces at ten times that rate and samples, every 5 s, the worker's resident memory
(/proc), its paused partitions, in-flight records and consumer lag (its own /metrics).
A bounded in-flight budget must keep the memory flat while the lag grows.

    python bench/overload_bench.py [--seconds 300] [--factor 10]
Writes bench/results/overload.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.kafka import create_topics, unique_name  # noqa: E402
from tests.integration.worker_process import WorkerProcess  # noqa: E402

BOOTSTRAP = os.environ.get("NER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TEXT = "Anna Kowalska met Pierre Dubois at Siemens in Berlin before flying to Tokyo with Satya Nadella."


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def produce_at(topic: str, rate: float, seconds: float, stop_at: float | None = None) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=524288)
    await producer.start()
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                await producer.send(topic, orjson.dumps({"id": sent, "text": TEXT}), partition=sent % 3)
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def main(args: argparse.Namespace) -> dict[str, object]:
    names = {role: unique_name(f"overload-{role}") for role in ("in", "out", "dead", "group")}
    await create_topics(BOOTSTRAP, {names["in"]: 3, names["out"]: 3, names["dead"]: 1})
    settings = {
        "NER_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "NER_INPUT_TOPIC": names["in"], "NER_OUTPUT_TOPIC": names["out"],
        "NER_DEAD_LETTER_TOPIC": names["dead"], "NER_GROUP_ID": names["group"],
        "NER_MAX_INFLIGHT_RECORDS": str(args.inflight_records), "NER_MAX_INFLIGHT_TOKENS": "65536",
    }
    worker = WorkerProcess(settings, Path(args.log)).start()
    try:
        worker.wait_ready(timeout=180)
        assert worker.process is not None
        # Sustained rate: a backlog large enough to keep the worker busy for the warm-up.
        await produce_at(names["in"], rate=5000, seconds=2)
        before = worker.metric("ner_records_published_total")
        await asyncio.sleep(args.warmup)
        engine_rate = (worker.metric("ner_records_published_total") - before) / args.warmup
        rate = max(engine_rate * args.factor, 50.0)
        producing = asyncio.create_task(produce_at(names["in"], rate=rate, seconds=args.seconds))
        samples = []
        started = time.monotonic()
        while not producing.done():
            samples.append({
                "t_s": round(time.monotonic() - started, 1),
                "rss_mib": round(rss_mib(worker.process.pid), 1),
                "paused_partitions": worker.metric("ner_paused_partitions"),
                "inflight_records": worker.metric("ner_inflight_records"),
                "consumer_lag_records": worker.metric("ner_consumer_lag_records"),
                "published_total": worker.metric("ner_records_published_total"),
            })
            await asyncio.sleep(5)
        produced = await producing
        worker.terminate()
    finally:
        worker.kill()
    rss = [s["rss_mib"] for s in samples[2:]] or [0.0]
    return {
        "benchmark": "overload", "device": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "settings": {**{k: v for k, v in settings.items() if "TOPIC" not in k and "GROUP" not in k},
                     "factor": args.factor, "seconds": args.seconds},
        "engine_rate_docs_per_s": round(engine_rate, 1), "offered_rate_docs_per_s": round(rate, 1),
        "produced": produced,
        "rss_mib_min_max_after_10s": [min(rss), max(rss)],
        "samples": samples,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--factor", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--inflight-records", type=int, default=2048)
    parser.add_argument("--log", default=str(REPO / ".cache" / "overload-worker.log"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "overload.json")
    result = asyncio.run(main(parser.parse_args()))
    parser.parse_args().out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
