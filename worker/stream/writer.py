"""Turns outcomes into the records to write, and hands them to a producer.

An output becomes a record on the output topic, a rejection a dead letter on the dead-letter
topic; each carries what to count and acknowledge once the broker has it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from worker.formats.resolver import RecordRejected, cache_for, cache_key
from worker.output import OutputControls
from worker.records import OUTPUT_TOO_LARGE, Rejection, dead_letter_headers, output_object, output_value
from worker.settings import Settings
from worker.stream.entries import Annotated, Outcome, Outgoing, SourceRecord
from worker.stream.metrics import WorkerMetrics


class RecordWriter:
    """Turns outcomes into ``Outgoing`` records and counts them once they are written."""

    def __init__(self, settings: Settings, metrics: WorkerMetrics, *, output_partitions: int,
                 dead_letter_partitions: int) -> None:
        self._settings = settings
        self._metrics = metrics
        self._output_partitions = output_partitions
        self._dead_letter_partitions = dead_letter_partitions
        self._output_controls = OutputControls.from_settings(settings)

    def output(self, source: SourceRecord, annotated: Annotated) -> Outgoing:
        try:
            value = self._value(source, annotated)
        except RecordRejected as rejected:
            return self.dead_letter(source, Rejection(rejected.reason, rejected.message))
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

    def _value(self, source: SourceRecord, annotated: Annotated) -> bytes:
        document = annotated.document
        if self._settings.output_format == "json" or document.schema is None:
            return output_value(document, annotated.entities, ner=annotated.ner, controls=self._output_controls,
                                key=source.key)
        body = output_object(document, annotated.entities, ner=annotated.ner, controls=self._output_controls)
        return cache_for(cache_key(self._settings)).encode(document.schema, body)

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
