"""Send outputs and dead letters; count a record as done only when the broker acknowledges it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from worker.metrics import WorkerMetrics
from worker.records import Document, Rejection, dead_letter_headers, output_value
from worker.settings import Settings
from worker.stream.offsets import PartitionProgress
from worker.text.decode import Entity

log = logging.getLogger(__name__)

OUTPUT_TOO_LARGE = "output_too_large"


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


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, settings: Settings, metrics: WorkerMetrics,
                 *, output_partitions: int, dead_letter_partitions: int) -> None:
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._output_partitions = output_partitions
        self._dead_letter_partitions = dead_letter_partitions
        self.failure: BaseException | None = None
        """The first send the broker refused for good; the worker must stop without committing it."""

    async def publish(self, record: SourceRecord, document: Document, entities: list[Entity],
                      ner: dict[str, Any]) -> None:
        value = output_value(document, entities, text_field=self._settings.text_field, ner=ner)
        partition = None
        if self._settings.output_partitioning == "input":
            partition = record.tp.partition % self._output_partitions
        try:
            future = await self._producer.send(
                self._settings.output_topic, value, key=record.key, partition=partition,
                headers=list(record.headers),
            )
        except MessageSizeTooLargeError as exc:
            await self.dead_letter(record, Rejection(OUTPUT_TOO_LARGE, f"the annotated record is too large: {exc}"))
            return
        labels = [entity["label"] for entity in entities]
        future.add_done_callback(lambda f: self._on_output_ack(f, record, labels))

    async def dead_letter(self, record: SourceRecord, rejection: Rejection) -> None:
        headers = dead_letter_headers(
            record.headers, rejection, topic=record.tp.topic, partition=record.tp.partition, offset=record.offset
        )
        future = await self._producer.send(
            self._settings.dead_letter_topic, record.value, key=record.key,
            partition=record.tp.partition % self._dead_letter_partitions, headers=headers,
        )
        future.add_done_callback(lambda f: self._on_dead_letter_ack(f, record, rejection.reason))

    def _on_output_ack(self, future: asyncio.Future[Any], record: SourceRecord, labels: list[str]) -> None:
        if not self._acknowledged(future, record):
            return
        self._metrics.records_published.inc()
        for label in labels:
            self._metrics.entities.labels(label).inc()
        self._metrics.end_to_end_latency.observe(max(0.0, time.time() - record.timestamp_ms / 1000))

    def _on_dead_letter_ack(self, future: asyncio.Future[Any], record: SourceRecord, reason: str) -> None:
        if self._acknowledged(future, record):
            self._metrics.records_dead_lettered.labels(reason).inc()

    def _acknowledged(self, future: asyncio.Future[Any], record: SourceRecord) -> bool:
        if future.cancelled() or future.exception() is not None:
            error = future.exception() if not future.cancelled() else asyncio.CancelledError()
            if self.failure is None:
                self.failure = error
                log.error("the broker did not acknowledge %s offset %d: %r", record.tp, record.offset, error)
            return False
        record.progress.ack(record.offset)
        self._metrics.last_progress.set(time.time())
        return True
