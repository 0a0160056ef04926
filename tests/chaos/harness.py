"""Chaos runs on the real broker: produce, disturb the workers or the broker, then count.

Every input carries its sequence number; after a run the output and dead-letter topics are read
whole and each input (partition, offset) is counted: lost, duplicated, and per-partition order
violations. In at-least-once mode a replay after a crash repeats a stretch of earlier outputs,
which is not an order violation: order is checked on the first occurrence of each input. In
exactly-once mode the output is read with ``read_committed`` and must hold each input once, in
input order.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import Record, read_topic

SENTENCES = [
    "Anna Kowalska met Pierre Dubois at Siemens in Berlin.",
    "Satya Nadella flew to Tokyo for a Microsoft event.",
    "João Silva works for Innovatech Solutions in São Paulo.",
    "The Dutch team visited Renault near Paris.",
    "Li Wei joined Toyota Motor Corporation in Valencia.",
    "Nothing to see here, just the weather.",
]


def document(number: int) -> bytes:
    if number % 97 == 13:
        return b'{"text": "broken json'  # a poison record now and then: it must reach the dead letter
    return orjson.dumps({"id": number, "text": SENTENCES[number % len(SENTENCES)]})


async def produce(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=20,
                                max_batch_size=262144)
    await producer.start()
    try:
        for number in range(count):
            await producer.send(topic, document(number), key=str(number).encode(), partition=number % partitions)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class Tally:
    scenario: str
    delivery: str
    inputs: int
    outputs: int = 0
    dead_letters: int = 0
    lost: int = 0
    duplicated: int = 0
    order_violations: int = 0
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        return (f"| {self.scenario} | {self.delivery} | {self.inputs:,} | {self.outputs:,} | {self.dead_letters:,} | "
                f"{self.lost} | {self.duplicated} | {self.order_violations} |")


TABLE_HEADER = ("| scenario | delivery | inputs | outputs read | dead letters read | lost | duplicated | "
                "order violations |\n|---|---|---|---|---|---|---|---|")


def source_of(record: Record, dead_letter: bool) -> tuple[int, int]:
    if dead_letter:
        headers = dict(record.headers)
        return int(headers["__connect.errors.partition"]), int(headers["__connect.errors.offset"])
    source = orjson.loads(record.value or b"{}")["ner"]["source"]
    return int(source["partition"]), int(source["offset"])


def tally(scenario: str, delivery: str, inputs: dict[int, int], outputs: Iterable[Record],
          dead: Iterable[Record]) -> Tally:
    """``inputs``: partition -> number of records produced to it (offsets 0..n-1)."""
    result = Tally(scenario, delivery, sum(inputs.values()))
    seen: Counter[tuple[int, int]] = Counter()
    first_seen: dict[int, list[int]] = {}
    for records, is_dead in ((list(outputs), False), (list(dead), True)):
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            partition, offset = source_of(record, is_dead)
            if is_dead:
                result.dead_letters += 1
            else:
                result.outputs += 1
            if seen[(partition, offset)] == 0 and not is_dead:
                first_seen.setdefault(partition, []).append(offset)
            seen[(partition, offset)] += 1
    expected = {(p, o) for p, n in inputs.items() for o in range(n)}
    result.lost = len(expected - set(seen))
    result.duplicated = sum(count - 1 for count in seen.values() if count > 1)
    for offsets in first_seen.values():
        result.order_violations += sum(1 for a, b in itertools.pairwise(offsets) if b <= a)
    return result


async def read_results(bootstrap: str, output: str, dead: str, expected: int, delivery: str,
                       timeout: float) -> tuple[list[Record], list[Record]]:
    isolation = "read_committed" if delivery == "exactly-once" else "read_uncommitted"
    dead_records = await read_topic(bootstrap, dead, expect=0, isolation_level=isolation, timeout=timeout)
    outputs = await read_topic(bootstrap, output, expect=expected - len(dead_records), isolation_level=isolation,
                               timeout=timeout)
    return outputs, dead_records


def expected_dead(count: int) -> int:
    return sum(1 for n in range(count) if n % 97 == 13)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
