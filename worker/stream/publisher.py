"""At-least-once publishing: a record counts as done only once the broker has it for good.

The exactly-once publisher (``transactions.py``) acknowledges a batch only when its transaction
commits instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from worker.stream.entries import Outcome, Outgoing, SourceRecord
from worker.stream.sink import Rewind
from worker.stream.writer import RecordWriter

log = logging.getLogger(__name__)


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
