"""The stream's main loop, in one screen: poll → parse → tokenize → batch → engine → publish → commit.

Guarantee (at-least-once): an offset is committed only when every record at or below it in its
partition has been acknowledged by the broker, as an output or as a dead letter.
Order: batches are published in the order they were formed, so the outputs of one input
partition reach the output topic in input order even with several batches in flight.
Backpressure: when the in-flight budget (records or tokens) is full, every assigned partition
is paused until there is room again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from worker.annotator import Annotator, BatchResult
from worker.metrics import WorkerMetrics
from worker.records import Document, Rejection, parse_value
from worker.settings import Settings
from worker.stream.batcher import Batcher
from worker.stream.offsets import OffsetTracker
from worker.stream.publisher import Publisher, SourceRecord
from worker.text.tokenize import EncodedText

log = logging.getLogger(__name__)

_ENGINE_ATTEMPTS = 3
_POLL_MS = 100
_RESUME_FRACTION = 0.75


@dataclass(slots=True)
class WorkItem:
    source: SourceRecord
    document: Document
    encoded: EncodedText


@dataclass(slots=True)
class InflightBatch:
    items: list[WorkItem]
    tokens: int
    task: asyncio.Task[BatchResult]


class FatalStreamError(RuntimeError):
    """The worker cannot go on without risking a lost record; it stops without committing past it."""


class StreamRunner:
    def __init__(self, settings: Settings, consumer: AIOKafkaConsumer, publisher: Publisher,
                 annotator: Annotator, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.consumer = consumer
        self.publisher = publisher
        self.annotator = annotator
        self.metrics = metrics
        self.tracker = OffsetTracker()
        self.batcher: Batcher[WorkItem] = Batcher(
            settings.max_batch_documents, settings.max_batch_tokens, settings.max_batch_wait_ms / 1000
        )
        self.inflight: asyncio.Queue[InflightBatch] = asyncio.Queue()
        self.inflight_tokens = 0
        self.group_joined = False
        self.last_loop = time.monotonic()
        self._revoking: set[TopicPartition] = set()
        self._paused = False
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._last_commit = time.monotonic()

    # --- lifecycle --------------------------------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Process until ``stop()``; then drain, commit and return. Raises on a fatal error."""
        publisher_task = asyncio.create_task(self._publish_in_order(), name="publisher")
        try:
            while not self._stopping.is_set():
                self._raise_if_failed(publisher_task)
                await self._poll_once()
                self._flush_due_batches()
                self._apply_backpressure()
                if time.monotonic() - self._last_commit >= self.settings.commit_interval_ms / 1000:
                    await self.commit()
                self.last_loop = time.monotonic()
        finally:
            await self._drain(deadline_s=self.settings.drain_timeout_s)
            await self.commit()
            publisher_task.cancel()
            await asyncio.gather(publisher_task, return_exceptions=True)
        self._raise_if_failed(publisher_task)

    def _raise_if_failed(self, publisher_task: asyncio.Task[None]) -> None:
        if self._fatal is None and publisher_task.done() and not publisher_task.cancelled():
            self._fatal = publisher_task.exception()
        if self._fatal is None and self.publisher.failure is not None:
            self._fatal = self.publisher.failure
        if self._fatal is not None:
            raise FatalStreamError(str(self._fatal)) from self._fatal

    # --- intake ---------------------------------------------------------------------------

    async def _poll_once(self) -> None:
        wait = self.batcher.seconds_until_due()
        timeout_ms = _POLL_MS if wait is None else max(1, min(_POLL_MS, int(wait * 1000)))
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.settings.max_batch_documents * 4)
        for tp, records in fetched.items():
            if tp in self._revoking or not self.tracker.is_assigned(tp):
                continue  # never tracked, never committed: the partition's next owner reads them
            await self._accept(tp, records)

    async def _accept(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        progress = self.tracker.progress(tp)
        documents: list[tuple[SourceRecord, Document]] = []
        for record in records:
            progress.track(record.offset)
            self.metrics.records_received.inc()
            source = SourceRecord(tp, record.offset, record.key, record.value, tuple(record.headers),
                                  record.timestamp, progress)
            parsed = parse_value(record.value, self.settings)
            if isinstance(parsed, Rejection):
                await self.publisher.dead_letter(source, parsed)
            else:
                documents.append((source, parsed))
        encoded = self.annotator.tokenize([document.text for _, document in documents])
        for (source, document), item in zip(documents, encoded, strict=True):
            if isinstance(item, Rejection):
                await self.publisher.dead_letter(source, item)
            else:
                self.batcher.add(WorkItem(source, document, item), sum(len(w) for w in item.windows))

    # --- batches --------------------------------------------------------------------------

    def _flush_due_batches(self, force: bool = False) -> None:
        while (force or self.inflight.qsize() < self.settings.max_concurrent_batches) and (
            self.batcher.due() or (force and len(self.batcher))
        ):
            items = self.batcher.take()
            tokens = sum(sum(len(w) for w in item.encoded.windows) for item in items)
            task = asyncio.create_task(self._annotate([item.encoded for item in items]))
            self.inflight.put_nowait(InflightBatch(items, tokens, task))
            self.inflight_tokens += tokens
            self.metrics.batch_documents.observe(len(items))
            self.metrics.batch_tokens.observe(tokens)

    async def _annotate(self, documents: list[EncodedText]) -> BatchResult:
        for attempt in range(1, _ENGINE_ATTEMPTS + 1):
            try:
                result = await self.annotator.annotate_encoded(documents)
            except Exception as exc:
                self.metrics.engine_errors.inc()
                if attempt == _ENGINE_ATTEMPTS:
                    raise
                log.warning("engine batch failed (attempt %d of %d): %s", attempt, _ENGINE_ATTEMPTS, exc)
                await asyncio.sleep(0.5 * 2**attempt)
            else:
                self.metrics.engine_seconds.observe(result.engine_seconds)
                self.metrics.tokens_processed.inc(result.tokens)
                return result
        raise AssertionError("unreachable")

    async def _publish_in_order(self) -> None:
        """Await batches in the order they were formed, so outputs keep their input order."""
        while True:
            batch = await self.inflight.get()
            result = await batch.task  # an engine that failed every attempt stops the worker here
            for item, entities in zip(batch.items, result.entities, strict=True):
                if isinstance(entities, Rejection):
                    await self.publisher.dead_letter(item.source, entities)
                    continue
                ner = {
                    "model": self.annotator.model_name,
                    "source": {"topic": item.source.tp.topic, "partition": item.source.tp.partition,
                               "offset": item.source.offset},
                    "timings": {"engine_ms": round(result.engine_seconds * 1000, 3)},
                }
                await self.publisher.publish(item.source, item.document, entities, ner)
            self.inflight_tokens -= batch.tokens

    # --- flow control and commits ---------------------------------------------------------

    def _apply_backpressure(self) -> None:
        records = self.tracker.pending()
        tokens = self.inflight_tokens + self.batcher.tokens
        self.metrics.inflight_records.set(records)
        self.metrics.inflight_tokens.set(tokens)
        over = records >= self.settings.max_inflight_records or tokens >= self.settings.max_inflight_tokens
        room = (records < self.settings.max_inflight_records * _RESUME_FRACTION
                and tokens < self.settings.max_inflight_tokens * _RESUME_FRACTION)
        assigned = self.consumer.assignment()
        if over and not self._paused:
            self.consumer.pause(*assigned)
            self._paused = True
        elif room and self._paused:
            self.consumer.resume(*assigned)
            self._paused = False
        self.metrics.paused_partitions.set(len(self.consumer.paused()))

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets = self.tracker.committable(partitions)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # Nothing is lost: the records stay uncommitted and are read again by their owner.
            self.metrics.commit_failures.inc()
            log.warning("offset commit failed: %s", exc)
            return
        self.tracker.mark_committed(offsets)
        self.metrics.commits.inc()

    async def _drain(self, *, deadline_s: float,
                     partitions: Iterable[TopicPartition] | None = None) -> bool:
        """Finish the in-flight work (of ``partitions``) within the deadline; True if it all finished."""
        chosen = None if partitions is None else list(partitions)
        self._flush_due_batches(force=True)
        deadline = time.monotonic() + deadline_s
        while self.tracker.pending(chosen) > 0 and time.monotonic() < deadline:
            if self.publisher.failure is not None or self._fatal is not None:
                return False
            self._flush_due_batches(force=True)
            await asyncio.sleep(0.01)
        return self.tracker.pending(chosen) == 0

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revoking |= revoked
        self.metrics.rebalances.labels("revoked").inc()
        finished = await self._drain(deadline_s=self.settings.drain_timeout_s, partitions=revoked)
        if not finished:
            log.warning("revoke: in-flight work of %d partitions did not finish in %.1fs; not committing it",
                        len(revoked), self.settings.drain_timeout_s)
        await self.commit(revoked)
        self.batcher.remove(lambda item: item.source.tp not in revoked)
        self.tracker.revoke(revoked)
        for tp in revoked:
            _forget_lag(self.metrics, tp)
        self._revoking -= revoked

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.tracker.assign(assigned)
        self.group_joined = True
        self.metrics.rebalances.labels("assigned").inc()
        self.metrics.assigned_partitions.set(len(self.consumer.assignment()))
        if self._paused and assigned:
            self.consumer.pause(*assigned)
        log.info("assigned partitions: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))


def _forget_lag(metrics: WorkerMetrics, tp: TopicPartition) -> None:
    # A revoked partition's lag is its new owner's to report.
    try:
        metrics.consumer_lag.remove(tp.topic, str(tp.partition))
    except KeyError:
        pass


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    # aiokafka awaits these hooks inside the rebalance, before rejoining: draining here is what
    # keeps a revoked partition from being committed past unprocessed records.
    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.on_assigned(set(assigned))
