"""At-least-once publishing: a record counts as done only once the broker has it for good.

The exactly-once publisher (``transactions.py``) acknowledges a batch only when its transaction
commits instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from worker.records import OUTPUT_REJECTED, Rejection
from worker.stream.entries import Outcome, Outgoing, SourceRecord
from worker.stream.refusals import RefusedDeadLetterError, describe, is_refusal
from worker.stream.sink import Rewind
from worker.stream.writer import RecordWriter

log = logging.getLogger(__name__)

_PRODUCER_START_TIMEOUT_S = 30.0
_PRODUCER_RETRY_S = 5.0


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

    fences_previous_owner = False

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
                    record.source.tp, record.source.offset, error,
                    extra={"topic": record.source.tp.topic, "partition": record.source.tp.partition,
                           "offset": record.source.offset, "error": repr(error)})
        record.source.progress.detached = True
        task = asyncio.get_running_loop().create_task(self._rewind(record.source.tp, error))
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

