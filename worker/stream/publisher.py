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

from worker.records import OUTPUT_REJECTED, OUTPUT_TOO_LARGE, Document, Rejection, dead_letter_headers, output_value
from worker.settings import Settings
from worker.stream.metrics import WorkerMetrics
from worker.stream.offsets import PartitionProgress
from worker.stream.refusals import describe, is_refusal
from worker.text.decode import Entity

log = logging.getLogger(__name__)

_PRODUCER_START_TIMEOUT_S = 30.0
_PRODUCER_RETRY_S = 5.0

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

    @property
    def dead_letter_topic(self) -> str:
        return self._settings.dead_letter_topic

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

    A write that fails rewinds its partition to the last committed offset: the records are
    written again, never skipped, and the duplicates this may cause are what at-least-once
    allows. A record the broker refused for something in the record (``refusals.py``) is a
    suspect on the way back: it is written alone, and if the broker refuses it again it becomes
    an ``output_rejected`` dead letter and the partition moves on.

    A batch the broker refused leaves a gap in the idempotent producer's sequence numbers that
    aiokafka never closes (every later batch to that output partition would be refused as out
    of order), so the producer is replaced after any failed write.
    """

    def __init__(self, producer: AIOKafkaProducer, writer: RecordWriter, rewind: Rewind,
                 make_producer: Callable[[], AIOKafkaProducer] | None = None) -> None:
        self._producer = producer
        self._original = producer  # the application's: it stops that one itself
        self._make_producer = make_producer
        self._writer = writer
        self._rewind = rewind
        self._rewinds: set[asyncio.Task[None]] = set()
        self._suspects: dict[TopicPartition, set[int]] = {}
        self._broken = False
        self._next_replace = 0.0  # monotonic time before which no replacement is tried again

    async def publish(self, entries: Sequence[tuple[SourceRecord, Outcome]]) -> None:
        for source, outcome in entries:
            if source.progress.detached:
                continue  # its partition was rewound or revoked while this batch was in flight
            if self._broken:
                await self._replace_producer()
            record = self._writer.outgoing(source, outcome)
            if source.offset in self._suspects.get(source.tp, ()):
                await self._write_alone(record)
                continue
            producer = self._producer
            try:
                future = await self._writer.send(producer, record)
            except KafkaError as exc:  # refused by the client (no metadata, buffer full): nothing was sent
                self._write_failed(producer, record, exc, sent=False)
                continue
            future.add_done_callback(lambda f, r=record, p=producer: self._on_ack(f, p, r))  # type: ignore[misc]

    def _on_ack(self, future: asyncio.Future[Any], producer: AIOKafkaProducer, record: Outgoing) -> None:
        if future.cancelled():
            self._write_failed(producer, record, asyncio.CancelledError())
        elif future.exception() is not None:
            self._write_failed(producer, record, future.exception())
        else:
            record.on_written()

    def _write_failed(self, producer: AIOKafkaProducer, record: Outgoing, error: BaseException | None,
                      *, sent: bool = True) -> None:
        if sent and producer is self._producer:
            self._broken = True
        if is_refusal(error):
            self._suspects.setdefault(record.source.tp, set()).add(record.source.offset)
        if record.source.progress.detached:
            return  # already rewound for an earlier failure of the same stretch
        log.warning("the broker did not take %s offset %d (%r); rewinding the partition",
                    record.source.tp, record.source.offset, error)
        record.source.progress.detached = True
        task = asyncio.get_running_loop().create_task(self._rewind(record.source.tp, False))
        self._rewinds.add(task)
        task.add_done_callback(self._rewinds.discard)

    async def _write_alone(self, record: Outgoing) -> None:
        """Write a suspect with nothing else in flight, so that a refusal can only be its own."""
        source = record.source
        await self._producer.flush()
        if self._broken:
            await self._replace_producer()
        producer = self._producer
        try:
            await (await self._writer.send(producer, record))
        except KafkaError as exc:
            if not is_refusal(exc):
                self._write_failed(producer, record, exc)
                return
            if record.topic == self._writer.dead_letter_topic:
                raise RefusedDeadLetterError(f"{source.tp} offset {source.offset}: {describe(exc)}") from exc
            log.warning("%s offset %d: %s; dead-lettering it as %s", source.tp, source.offset, describe(exc),
                        OUTPUT_REJECTED)
            self._broken = True  # the refused batch left a gap in the producer's sequence numbers
            await self._replace_producer()
            dead_letter = self._writer.dead_letter(source, Rejection(OUTPUT_REJECTED, describe(exc)))
            try:
                await (await self._writer.send(self._producer, dead_letter))
            except KafkaError as dead_letter_error:
                self._write_failed(self._producer, dead_letter, dead_letter_error)
                return
            dead_letter.on_written()
        else:
            record.on_written()
        self._suspects.get(source.tp, set()).discard(source.offset)

    async def _replace_producer(self) -> None:
        if self._make_producer is None:
            self._broken = False
            return
        if time.monotonic() < self._next_replace:
            return
        old, new = self._producer, self._make_producer()
        try:
            await asyncio.wait_for(new.start(), timeout=_PRODUCER_START_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            # The broker may be restarting: go on with the old producer (its failures rewind, and
            # rewinds are bounded) and try again a little later.
            log.warning("cannot start a replacement producer yet (%r); retrying in %.0fs", exc,
                        _PRODUCER_RETRY_S)
            self._next_replace = time.monotonic() + _PRODUCER_RETRY_S
            await _stop_producer(new)
            return
        self._producer, self._broken = new, False
        if old is not self._original:
            await _stop_producer(old)

    async def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        """Nothing to prepare: one producer serves every partition."""

    async def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self._suspects.pop(tp, None)

    async def close(self) -> None:
        """The first producer belongs to the application, which stops it last; replacements are ours."""
        if self._producer is not self._original:
            await _stop_producer(self._producer)


async def _stop_producer(producer: AIOKafkaProducer) -> None:
    try:
        await asyncio.wait_for(producer.stop(), timeout=_PRODUCER_START_TIMEOUT_S)
    except Exception as exc:  # a broken producer may fail to stop; nothing of it is still needed
        log.debug("stopping a replaced producer: %r", exc)


class RefusedDeadLetterError(RuntimeError):
    """The broker refuses a dead letter for good: nowhere is left to put the record."""
