"""The broker the tests get is a real Kafka that does what the worker relies on: keyed records
with headers, consumer groups that commit and resume, idempotent and transactional producers,
offsets committed inside a transaction, and read_committed readers that never see aborted data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.fixtures.kafka import read_to_end, unique_name

pytestmark = pytest.mark.integration

TopicFactory = Callable[[Mapping[str, int]], dict[str, str]]
# Short, so that a test dying inside a transaction blocks read_committed readers only briefly.
TRANSACTION_TIMEOUT_MS = 10_000


def group_consumer(bootstrap: str, group: str, *topics: str, **kwargs: object) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kwargs,
    )


async def produce(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def consume_exactly(consumer: AIOKafkaConsumer, count: int, timeout: float = 30.0) -> list[bytes]:
    """The next `count` values from an already started consumer, in partition order."""
    values: list[bytes] = []
    async with asyncio.timeout(timeout):
        while len(values) < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=count - len(values))
            values.extend(m.value for msgs in batches.values() for m in msgs if m.value is not None)
    return values


def test_keyed_records_with_headers_round_trip(kafka_bootstrap: str, kafka_topics: TopicFactory) -> None:
    topic = kafka_topics({"roundtrip": 3})["roundtrip"]
    sent = [(f"key-{i % 5}".encode(), f"value-{i}".encode(), [("trace-id", f"t{i}".encode())]) for i in range(40)]

    async def scenario() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for key, value, headers in sent:
                await producer.send(topic, value, key=key, headers=headers)
            await producer.flush()
        finally:
            await producer.stop()
        records = await read_to_end(kafka_bootstrap, topic)

        assert sorted((r.key, r.value, r.headers) for r in records) == sorted((k, v, tuple(h)) for k, v, h in sent)
        partitions_of_key: dict[bytes | None, set[int]] = {}
        for r in records:
            partitions_of_key.setdefault(r.key, set()).add(r.partition)
        assert all(len(p) == 1 for p in partitions_of_key.values())  # a key stays on one partition
        for partition in {r.partition for r in records}:
            offsets = [r.offset for r in records if r.partition == partition]
            assert offsets == list(range(len(offsets)))  # idempotent producer: no gaps, no duplicates

    asyncio.run(scenario())


def test_consumer_group_resumes_after_its_committed_offset(kafka_bootstrap: str, kafka_topics: TopicFactory) -> None:
    topic = kafka_topics({"resume": 1})["resume"]
    group = unique_name("resume-group")
    values = [f"doc-{i}".encode() for i in range(10)]
    tp = TopicPartition(topic, 0)

    async def scenario() -> None:
        await produce(kafka_bootstrap, topic, values)
        first = group_consumer(kafka_bootstrap, group, topic)
        await first.start()
        try:
            assert await consume_exactly(first, 4) == values[:4]
            await first.commit({tp: 4})
        finally:
            await first.stop()  # leaves the group

        second = group_consumer(kafka_bootstrap, group, topic)
        await second.start()
        try:
            assert await second.committed(tp) == 4
            assert await consume_exactly(second, 6) == values[4:]
            await second.commit()
            assert await second.committed(tp) == 10
        finally:
            await second.stop()

    asyncio.run(scenario())


def test_transaction_commits_outputs_with_input_offsets_and_abort_stays_invisible(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topics = kafka_topics({"txn-in": 1, "txn-out": 2})
    group = unique_name("txn-group")
    inputs = [f"in-{i}".encode() for i in range(6)]
    tp_in = TopicPartition(topics["txn-in"], 0)

    async def scenario() -> None:
        await produce(kafka_bootstrap, topics["txn-in"], inputs)
        consumer = group_consumer(kafka_bootstrap, group, topics["txn-in"], isolation_level="read_committed")
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap,
            transactional_id=unique_name("txn-id"),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )
        await consumer.start()
        await producer.start()
        try:
            # Committed: the first three inputs become outputs, and the input offset moves with them.
            async with producer.transaction():
                for value in await consume_exactly(consumer, 3):
                    await producer.send(topics["txn-out"], b"out-" + value, key=value)
                await producer.send_offsets_to_transaction({tp_in: 3}, group)
            # Aborted: neither these outputs nor this offset may count.
            await producer.begin_transaction()
            for value in await consume_exactly(consumer, 3):
                await producer.send(topics["txn-out"], b"out-" + value, key=value)
            await producer.send_offsets_to_transaction({tp_in: 6}, group)
            await producer.flush()
            await producer.abort_transaction()
            assert await consumer.committed(tp_in) == 3
        finally:
            await producer.stop()
            await consumer.stop()

        committed = await read_to_end(kafka_bootstrap, topics["txn-out"], isolation_level="read_committed")
        assert sorted(r.value or b"" for r in committed) == [b"out-in-0", b"out-in-1", b"out-in-2"]
        # The aborted records were really written: an uncommitted reader sees them.
        everything = await read_to_end(kafka_bootstrap, topics["txn-out"])
        assert sorted(r.value or b"" for r in everything) == sorted(b"out-" + v for v in inputs)

        # A restarted member of the group resumes after the committed transaction only.
        again = group_consumer(kafka_bootstrap, group, topics["txn-in"], isolation_level="read_committed")
        await again.start()
        try:
            assert await consume_exactly(again, 3) == inputs[3:]
        finally:
            await again.stop()

    asyncio.run(scenario())
