"""Send outputs and dead letters; a record counts as done only once the broker has it for good.

``Outgoing`` is one record to write and what to do once it is safely written. The at-least-once
``Publisher`` acknowledges each record when the broker acknowledges its write; the exactly-once
publisher (``transactions.py``) acknowledges a batch only when its transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from worker.records import OUTPUT_TOO_LARGE, Document, Rejection, dead_letter_headers, output_value
from worker.settings import Settings
from worker.stream.metrics import WorkerMetrics
from worker.stream.offsets import PartitionProgress
from worker.text.decode import Entity

log = logging.getLogger(__name__)

Rewind = Callable[[TopicPartition, bool], Coroutine[Any, Any, None]]
"""Read a partition again from its last committed offset: (partition, lost). Lost (fenced): drop it."""


@dataclass(slots=True)
class SourceRecord:
    """Where an input record came from, and what must travel with it to the output."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    progress: PartitionProgress


@dataclass(slots=True)
class Annotated:
    """A record ready to publish: its document and entities, with the ``ner`` block."""

    document: Document
    entities: list[Entity]
    ner: dict[str, Any]


Outcome = Annotated | Rejection


@dataclass(slots=True)
class Outgoing:
    topic: str
    value: bytes | None
    key: bytes | None
    partition: int
    """-1: let the producer hash the key."""
    headers: list[tuple[str, bytes]]
    source: SourceRecord
    on_written: Callable[[], None]


class RecordWriter:
    """Turns outcomes into ``Outgoing`` records and counts them once they are written."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, *, output_partitions: int,
                 dead_letter_partitions: int) -> None:
        self._settings = settings
        self._metrics = metrics
        self._output_partitions = output_partitions
        self._dead_letter_partitions = dead_letter_partitions

    def output(self, source: SourceRecord, annotated: Annotated) -> Outgoing:
        value = output_value(annotated.document, annotated.entities, text_field=self._settings.text_field,
                             ner=annotated.ner)
        partition = source.tp.partition % self._output_partitions
        if self._settings.output_partitioning == "key" and source.key is not None:
            partition = -1
        labels = [entity["label"] for entity in annotated.entities]

        def written() -> None:
            self._metrics.records_published.inc()
            for label in labels:
                self._metrics.entities.labels(label).inc()
            self._metrics.end_to_end_latency.observe(max(0.0, time.time() - source.timestamp_ms / 1000))
            self._done(source)

        return Outgoing(self._settings.output_topic, value, source.key, partition, list(source.headers), source,
                        written)

    def dead_letter(self, source: SourceRecord, rejection: Rejection) -> Outgoing:
        headers = dead_letter_headers(source.headers, rejection, topic=source.tp.topic,
                                      partition=source.tp.partition, offset=source.offset)

        def written() -> None:
            self._metrics.records_dead_lettered.labels(rejection.reason).inc()
            self._done(source)

        return Outgoing(self._settings.dead_letter_topic, source.value, source.key,
                        source.tp.partition % self._dead_letter_partitions, headers, source, written)

    def outgoing(self, source: SourceRecord, outcome: Outcome) -> Outgoing:
        if isinstance(outcome, Rejection):
            return self.dead_letter(source, outcome)
        return self.output(source, outcome)

    def _done(self, source: SourceRecord) -> None:
        source.progress.ack(source.offset)
        self._metrics.last_progress.set(time.time())

    async def send(self, producer: AIOKafkaProducer, record: Outgoing) -> asyncio.Future[Any]:
        """Hand one record to the producer.

        An output over the producer's size limit becomes a dead letter; a dead letter whose
        original value is over the limit goes out without the value (the input topic still holds
        it), marked with ``ner.error.value_dropped`` and the original size.
        """
        try:
            return await _send(producer, record)
        except MessageSizeTooLargeError as exc:
            if record.topic != self._settings.dead_letter_topic:
                too_large = Rejection(OUTPUT_TOO_LARGE, f"the output is too large: {exc}")
                fallback = self.dead_letter(record.source, too_large)
            else:
                fallback = record
            record.on_written = fallback.on_written
            try:
                return await _send(producer, fallback)
            except MessageSizeTooLargeError:
                size = len(fallback.value or b"")
                fallback.headers = [*fallback.headers, ("ner.error.value_dropped", str(size).encode())]
                fallback.value = None
                return await _send(producer, fallback)


async def _send(producer: AIOKafkaProducer, record: Outgoing) -> asyncio.Future[Any]:
    value = record.value
    if value is None and record.key is None:
        value = b""  # the client refuses a record with neither key nor value (an input tombstone)
    future: asyncio.Future[Any] = await producer.send(
        record.topic, value, key=record.key, partition=None if record.partition < 0 else record.partition,
        headers=record.headers,
    )
    return future


class Sink(Protocol):
    """Where finished batches go: at-least-once ``Publisher`` or exactly-once ``TransactionalPublisher``."""

    async def publish(self, entries: Sequence[tuple[SourceRecord, Outcome]]) -> None: ...

    async def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def close(self) -> None: ...


class Publisher:
    """At-least-once: one idempotent producer; a record is done when the broker acknowledges it.

    A write the broker refuses for good (say, it was down longer than the producer's timeout)
    rewinds its partition to the last committed offset: the records are written again, never
    skipped, and the duplicates this may cause are what at-least-once allows.
    """

    def __init__(self, producer: AIOKafkaProducer, writer: RecordWriter, rewind: Rewind) -> None:
        self._producer = producer
        self._writer = writer
        self._rewind = rewind
        self._rewinds: set[asyncio.Task[None]] = set()

    async def publish(self, entries: Sequence[tuple[SourceRecord, Outcome]]) -> None:
        for source, outcome in entries:
            if source.progress.detached:
                continue  # its partition was rewound or revoked while this batch was in flight
            record = self._writer.outgoing(source, outcome)
            try:
                future = await self._writer.send(self._producer, record)
            except KafkaError as exc:
                self._write_failed(record, exc)
                continue
            future.add_done_callback(lambda f, r=record: self._on_ack(f, r))  # type: ignore[misc]

    def _on_ack(self, future: asyncio.Future[Any], record: Outgoing) -> None:
        if future.cancelled():
            self._write_failed(record, asyncio.CancelledError())
        elif future.exception() is not None:
            self._write_failed(record, future.exception())
        else:
            record.on_written()

    def _write_failed(self, record: Outgoing, error: BaseException | None) -> None:
        if record.source.progress.detached:
            return  # already rewound for an earlier failure of the same stretch
        log.warning("the broker did not take %s offset %d (%r); rewinding the partition",
                    record.source.tp, record.source.offset, error,
                    extra={"topic": record.source.tp.topic, "partition": record.source.tp.partition,
                           "offset": record.source.offset, "error": repr(error)})
        record.source.progress.detached = True
        task = asyncio.get_running_loop().create_task(self._rewind(record.source.tp, False))
        self._rewinds.add(task)
        task.add_done_callback(self._rewinds.discard)

    async def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """Nothing to prepare: one producer serves every partition."""

    async def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        """Nothing to release."""

    async def close(self) -> None:
        """The shared producer belongs to the application, which stops it last."""
