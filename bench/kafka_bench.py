"""What the Kafka path costs: the real worker on the local broker with a null engine.

The null engine answers instantly with fixed probabilities (one entity per document), so what
is measured is everything but the model: consume, parse, tokenize, batch, decode, serialize,
produce, commit (at-least-once). Reports documents/s and documents per CPU-second of the worker
process, which says how many cores keep one GPU fed; beside it, in the same run, a bare aiokafka
relay (consume, orjson parse, add a field, produce, commit after the acks) as the anchor.

    python bench/kafka_bench.py [--documents 50000]
Writes bench/results/kafka_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.kafka import create_topics, unique_name  # noqa: E402
from worker.engine.base import BestLabels, ScoreKind, WindowScores  # noqa: E402
from worker.settings import load_settings  # noqa: E402
from worker.stream.metrics import WorkerMetrics  # noqa: E402

BOOTSTRAP = os.environ.get("NER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
TEXT = "Anna Kowalska met Pierre Dubois at Siemens in Berlin before flying to Tokyo with Satya Nadella."
PARTITIONS = 6


class NullEngine:
    """Instant fixed scores: the first content token is B-PER, everything else O."""

    name = "null"
    scores: ScoreKind = "probabilities"

    def __init__(self, id2label: dict[int, str], max_length: int) -> None:
        self.id2label = id2label
        self.max_length = max_length
        self._b_per = next(i for i, label in id2label.items() if label == "B-PER")

    async def start(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    async def classify(self, windows: Sequence[Sequence[int]]) -> list[WindowScores]:
        # Each token's best label and its probability, as the real engines answer for ``simple``.
        out: list[WindowScores] = []
        for window in windows:
            classes = np.zeros(len(window), dtype=np.uint8)
            if len(window) > 2:
                classes[1] = self._b_per
            out.append(BestLabels(classes, np.ones(len(window), dtype=np.float32)))
        return out

    async def close(self) -> None:
        pass


async def produce(topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=524288)
    await producer.start()
    try:
        for n in range(count):
            await producer.send(topic, orjson.dumps({"id": n, "text": TEXT}), partition=n % PARTITIONS)
        await producer.flush()
    finally:
        await producer.stop()


async def relay(source: str, target: str, group: str, count: int) -> tuple[float, float]:
    """The anchor: a bare aiokafka relay on the same broker (consume, orjson parse, add a field,
    produce, commit after the acks). Returns (wall seconds, CPU seconds) from its first record."""
    consumer = AIOKafkaConsumer(source, bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all", max_batch_size=524288)
    await consumer.start()
    await producer.start()
    try:
        done, started, cpu0 = 0, 0.0, resource.getrusage(resource.RUSAGE_SELF)
        while done < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=2048)
            if not batches:
                continue
            if not started:
                started, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            sends = []
            for partition, records in batches.items():
                for record in records:
                    body = orjson.loads(record.value)
                    body["relayed"] = True
                    sends.append(await producer.send(target, orjson.dumps(body), partition=partition.partition))
            await asyncio.gather(*sends)  # every record acknowledged before its offset is committed
            await consumer.commit({partition: records[-1].offset + 1 for partition, records in batches.items()})
            done += sum(len(records) for records in batches.values())
        wall = time.perf_counter() - started
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        return wall, (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    finally:
        await producer.stop()
        await consumer.stop()


async def committed(group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)])
    finally:
        await consumer.stop()


async def main(args: argparse.Namespace) -> dict[str, object]:
    from transformers import AutoConfig

    from worker.stream.app import run_worker

    names = {role: unique_name(f"kbench-{role}") for role in ("in", "out", "dead", "group", "relayed", "relay")}
    await create_topics(BOOTSTRAP, {names["in"]: PARTITIONS, names["out"]: PARTITIONS, names["dead"]: 1,
                                    names["relayed"]: PARTITIONS})
    await produce(names["in"], args.documents)
    env = {"NER_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "NER_INPUT_TOPIC": names["in"],
           "NER_OUTPUT_TOPIC": names["out"], "NER_DEAD_LETTER_TOPIC": names["dead"], "NER_GROUP_ID": names["group"],
           "NER_HTTP_PORT": "0", "NER_MAX_BATCH_DOCUMENTS": str(args.batch), "NER_LOG_LEVEL": "WARNING"}
    settings = load_settings(env)
    config = AutoConfig.from_pretrained(settings.model)
    engine = NullEngine({int(k): v for k, v in config.id2label.items()}, 128)
    metrics = WorkerMetrics()
    task = asyncio.create_task(run_worker(settings, metrics=metrics, engine=engine))
    while metrics.records_received._value.get() == 0:
        await asyncio.sleep(0.05)
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    while metrics.records_published._value.get() < args.documents:
        await asyncio.sleep(0.05)
    wall = time.perf_counter() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    os.kill(os.getpid(), signal.SIGTERM)
    await task
    done = await committed(names["group"], names["in"])
    relay_wall, relay_cpu = await relay(names["in"], names["relayed"], names["relay"], args.documents)
    return {
        "benchmark": "kafka_path_null_engine", "device": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "settings": {"documents": args.documents, "partitions": PARTITIONS, "max_batch_documents": args.batch,
                     "delivery": "at-least-once", "text_chars": len(TEXT)},
        "documents_per_s": round(args.documents / wall, 1),
        "documents_per_cpu_s": round(args.documents / cpu, 1),
        "worker_cpu_cores_used": round(cpu / wall, 2),
        "committed_after_shutdown": done,
        "bare_relay": {"documents_per_s": round(args.documents / relay_wall, 1),
                       "documents_per_cpu_s": round(args.documents / relay_cpu, 1)},
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "kafka_bench.json")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    arguments.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
