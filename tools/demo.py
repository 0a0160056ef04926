"""The demo: a local Kafka broker, the worker on the shipped CPU model, sample documents in,
annotated documents printed. Stops what it started.

    python tools/demo.py [--samples samples/documents.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
KAFKA_TOOL = REPO / "tools" / "kafka" / "kafka-local.sh"
BOOTSTRAP = os.environ.get("NER_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
PARTITIONS = 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=Path, default=REPO / "samples" / "documents.jsonl")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    lines = [line for line in args.samples.read_bytes().splitlines() if line.strip()]

    started_broker = subprocess.run([str(KAFKA_TOOL), "status"], capture_output=True).returncode != 0
    if started_broker:
        print("starting the local Kafka broker ...", flush=True)
        subprocess.run([str(KAFKA_TOOL), "start"], check=True)
    run = uuid.uuid4().hex[:8]
    topics = {"input": f"demo-{run}.input", "output": f"demo-{run}.output", "dead": f"demo-{run}.dead-letter"}
    worker: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(_create_topics(list(topics.values())))
        asyncio.run(_produce(topics["input"], lines))
        print(f"produced {len(lines)} records to {topics['input']}; starting the worker ...", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
        env.update(
            {
                "NER_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
                "NER_INPUT_TOPIC": topics["input"],
                "NER_OUTPUT_TOPIC": topics["output"],
                "NER_DEAD_LETTER_TOPIC": topics["dead"],
                "NER_GROUP_ID": f"demo-{run}",
                "NER_HTTP_PORT": "0",
            }
        )
        worker = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=env, cwd=REPO)
        outputs, dead = asyncio.run(_collect(topics["output"], topics["dead"], len(lines), args.timeout))
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        if started_broker:
            subprocess.run([str(KAFKA_TOOL), "stop"], check=False)
    _print(outputs, dead)
    ok = len(outputs) + len(dead) == len(lines)
    print(
        f"\n{len(outputs)} annotated, {len(dead)} dead-lettered, {len(lines)} sent: {'OK' if ok else 'MISSING RECORDS'}"
    )
    return 0 if ok else 1


async def _create_topics(names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        await admin.close()


async def _produce(topic: str, lines: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for number, line in enumerate(lines, 1):
            await producer.send(topic, line, key=f"line-{number}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _collect(
    output: str, dead: str, expected: int, timeout: float
) -> tuple[list[dict], list[tuple[bytes, dict[str, str]]]]:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(
        output, dead, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    outputs: list[dict] = []  # type: ignore[type-arg]
    dead_letters: list[tuple[bytes, dict[str, str]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(outputs) + len(dead_letters) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if tp.topic == output:
                        outputs.append(orjson.loads(record.value))
                    else:
                        headers = {k: v.decode() for k, v in record.headers}
                        dead_letters.append((record.value, headers))
    finally:
        await consumer.stop()
    return outputs, dead_letters


def _print(outputs: list[dict], dead: list[tuple[bytes, dict[str, str]]]) -> None:  # type: ignore[type-arg]
    bold, dim, reset = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
    for doc in sorted(outputs, key=lambda d: (d["ner"]["source"]["partition"], d["ner"]["source"]["offset"])):
        text: str = doc["text"]
        marked, cursor = [], 0
        for entity in doc["entities"]:
            marked.append(text[cursor : entity["start"]])
            marked.append(f"{bold}[{text[entity['start'] : entity['end']]}]{reset}{dim}{entity['label']}{reset}")
            cursor = entity["end"]
        marked.append(text[cursor:])
        print(f"\n{doc.get('id', '?')}: {''.join(marked)}")
        for entity in doc["entities"]:
            print(
                f"    {entity['label']:<5} {entity['start']:>4}-{entity['end']:<4}"
                f" {entity['score']:.3f}  {entity['text']}"
            )
    for value, headers in dead:
        print(
            f"\ndead letter ({headers.get('ner.error.reason')}): {value[:60]!r}\n    {headers.get('ner.error.message')}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
