"""Exactly-once: outputs, dead letters and input offsets committed in one Kafka transaction.

Fencing. aiokafka sends ``TxnOffsetCommit`` v0, without the consumer group's generation
(no KIP-447; aiokafka issue #844), so the broker cannot tell that a worker lost a partition in a
rebalance. We therefore use the pre-KIP-447 scheme (Kafka Streams' old ``exactly_once``, Faust):
one transactional producer per *input partition*, with a transactional id derived from the
group, topic and partition. Whoever owns partition p next starts a producer with the same id;
``InitProducerId`` bumps its epoch and the broker fences the old owner, whose open transaction
is aborted and whose later writes and offset commits are refused.

Each finished batch becomes one transaction per input partition it touches, committed
concurrently (different producers) but in batch order per partition. A transaction that fails
is aborted: nothing of it is visible to ``read_committed`` readers, and the partition is rewound
to its last committed offset so its records are processed again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from worker.retry import Backoff
from worker.stream.entries import Outcome, Outgoing, SourceRecord
from worker.stream.sink import Rewind
from worker.stream.writer import RecordWriter

log = logging.getLogger(__name__)

ProducerFactory = Callable[[str], AIOKafkaProducer]


def transactional_id(prefix: str, group_id: str, tp: TopicPartition) -> str:
    """Stable per input partition, so that the partition's next owner fences the previous one."""
    return f"{prefix}.{group_id}.{tp.topic}.{tp.partition}"


class TransactionalPublisher:
    def __init__(self, writer: RecordWriter, make_producer: ProducerFactory, *, group_id: str, id_prefix: str,
                 rewind: Rewind, start_timeout_s: float) -> None:
        self._start_timeout_s = start_timeout_s
        self._writer = writer
        self._make_producer = make_producer
        self._group_id = group_id
        self._id_prefix = id_prefix
        self._rewind = rewind
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}

    async def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        # Starting the producer runs InitProducerId: this is the moment the previous owner of the
        # partition is fenced and its unfinished transaction aborted.
        await asyncio.gather(*(self._start_producer(tp) for tp in partitions if tp not in self._producers))

    async def _start_producer(self, tp: TopicPartition) -> None:
        backoff = Backoff(deadline_s=self._start_timeout_s)
        while True:
            producer = self._make_producer(transactional_id(self._id_prefix, self._group_id, tp))
            try:
                await producer.start()
            except KafkaError as exc:
                await _stop(producer)
                if backoff.exhausted():
                    raise
                log.warning("%s: transactional producer cannot start yet (%r); retrying", tp, exc,
                            extra={"topic": tp.topic, "partition": tp.partition, "error": repr(exc)})
                await backoff.wait()
                continue
            self._producers[tp] = producer
            return

    async def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        producers = [self._producers.pop(tp) for tp in partitions if tp in self._producers]
        await asyncio.gather(*(_stop(p) for p in producers))

    async def close(self) -> None:
        await self.partitions_revoked(list(self._producers))

    async def publish(self, entries: Sequence[tuple[SourceRecord, Outcome]]) -> None:
        by_partition: dict[TopicPartition, list[Outgoing]] = {}
        for source, outcome in entries:
            by_partition.setdefault(source.tp, []).append(self._writer.outgoing(source, outcome))
        await asyncio.gather(*(self._transact(tp, records) for tp, records in by_partition.items()))

    async def _transact(self, tp: TopicPartition, records: list[Outgoing]) -> None:
        producer = self._producers.get(tp)
        if producer is None or records[0].source.progress.detached:
            return  # the partition was revoked or rewound meanwhile; its records are read again
        position = records[-1].source.offset + 1
        try:
            async with producer.transaction():
                futures = [await self._writer.send(producer, record) for record in records]
                await asyncio.gather(*futures)
                await producer.send_offsets_to_transaction({tp: position}, self._group_id)
        except ProducerFenced as exc:
            log.warning("%s: fenced by the partition's new owner (%s); giving it up", tp, exc,
                        extra={"topic": tp.topic, "partition": tp.partition, "error": repr(exc)})
            await self._after_abort(tp, fenced=True)
            return
        except (TimeoutError, KafkaError) as exc:
            log.warning("%s: transaction aborted (%r); rewinding to the last committed offset", tp, exc,
                        extra={"topic": tp.topic, "partition": tp.partition, "batch_size": len(records),
                               "error": repr(exc)})
            await self._after_abort(tp, fenced=False)
            return
        for record in records:
            record.on_written()
        records[0].source.progress.committed = position

    async def _after_abort(self, tp: TopicPartition, *, fenced: bool) -> None:
        producer = self._producers.pop(tp, None)
        if producer is not None:
            # A producer in an error state cannot start another transaction: replace it. Starting
            # the replacement aborts anything the broker still holds open for this id.
            await _stop(producer)
            if not fenced:
                await self.partitions_assigned([tp])
        await self._rewind(tp, fenced)


async def _stop(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=10)
    except Exception as exc:  # stopping a fenced or broken producer may itself fail; nothing to save
        log.debug("stopping a transactional producer: %r", exc)


def eos_producer_factory(common: dict[str, Any], *, client_id: str, transaction_timeout_ms: int) -> ProducerFactory:
    def make(txn_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(client_id=client_id, transactional_id=txn_id, enable_idempotence=True, acks="all",
                                linger_ms=5, transaction_timeout_ms=transaction_timeout_ms, **common)

    return make
