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
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError, ProducerFenced

from worker.annotator import Annotator, BatchResult, Prepared
from worker.formats import SchemaResolver
from worker.records import Rejection, engine_share, interleave, ner_block
from worker.retry import Backoff, backoff_delay
from worker.stream.batcher import Batcher
from worker.stream.config import RunnerConfig
from worker.stream.entries import Annotated, Outcome, SourceRecord
from worker.stream.health import StreamStatus
from worker.stream.metrics import WorkerMetrics
from worker.stream.offsets import OffsetTracker
from worker.stream.refusals import NotAuthorizedError, not_authorized, refused_for_good
from worker.stream.sink import SinkFactory
from worker.text.tokenize import EncodedText
from worker.tracing import BatchTrace, Tracing, now_ns

log = logging.getLogger(__name__)

_ENGINE_ATTEMPTS = 3
_ENGINE_RETRY_BASE_S = 1.0
_ENGINE_RETRY_MAX_S = 2.0
_POLL_MS = 100
_RESUME_FRACTION = 0.75
# A partition rewound this many times in a row to one offset stops the worker; the waits between
# rewinds double from _REWIND_BACKOFF_S (0.5 + 1 + 2 + 4 s before the last one).
_MAX_REWINDS = 5
_COMMIT_TIMEOUT_S = 10.0
_COMMITTED_READ_TIMEOUT_S = 30.0
_REWIND_BACKOFF_S = 0.5
_REWIND_BACKOFF_MAX_S = 8.0


@dataclass(slots=True)
class WorkItem(Prepared):
    """One input record on its way through the pipeline: to annotate, or rejected with a reason.

    Rejected records travel with the others (at no token cost), so that dead letters are
    published in order and, in exactly-once mode, inside the same transaction as their batch.
    """

    source: SourceRecord = field(kw_only=True)


@dataclass(slots=True)
class InflightBatch:
    items: list[WorkItem]
    tokens: int
    task: asyncio.Task[BatchResult]
    trace: BatchTrace


class FatalStreamError(RuntimeError):
    """The worker cannot go on without risking a lost record; it stops without committing past it.

    ``refused``: the broker refused for good (a permission denied, a dead letter that the
    dead-letter topic will not take): a restart would meet the same refusal, so a stream process
    of several stops the worker instead of being restarted.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def stopping_for(fault: BaseException) -> FatalStreamError:
    """The stop that ``fault`` calls for (raised from it), saying whether the broker refused for good."""
    refused = fault.refused if isinstance(fault, FatalStreamError) else refused_for_good(fault)
    return FatalStreamError(str(fault), refused=refused)


class StreamRunner:
    """The loop of one consumer. ``sink`` builds the publisher, handing it this runner's ``rewind``.

    ``resolver`` (Schema Registry input formats only) fetches the writer schemas of fetched
    records before they are parsed; ``tracing`` (off unless configured) records the stages.
    """

    def __init__(self, config: RunnerConfig, consumer: AIOKafkaConsumer, sink: SinkFactory,
                 annotator: Annotator, metrics: WorkerMetrics, status: StreamStatus, *,
                 resolver: SchemaResolver | None = None, tracing: Tracing | None = None) -> None:
        self.config = config
        self.resolver = resolver
        self.tracing = tracing if tracing is not None else Tracing()  # the base class: tracing off
        self.consumer = consumer
        self.publisher = sink(self.rewind)
        self.annotator = annotator
        self.metrics = metrics
        self.status = status
        self.tracker = OffsetTracker()
        self.batcher: Batcher[WorkItem] = Batcher(
            config.max_batch_documents, config.max_batch_tokens, config.max_batch_wait_s
        )
        self.inflight: asyncio.Queue[InflightBatch] = asyncio.Queue()
        self.inflight_tokens = 0
        self._on_hold: set[TopicPartition] = set()
        self._paused = False
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._last_commit = time.monotonic()
        self._first_read: dict[TopicPartition, int] = {}  # where a rewind without a committed offset goes
        self._rewound: dict[TopicPartition, tuple[int | None, int]] = {}  # offset of the last rewinds, how many
        # Per partition, which tenure of it this is: every assignment and revoke moves it on, so
        # a rewind that a rebalance overtook (at any of its waits) leaves the new tenure alone.
        self._tenures: dict[TopicPartition, int] = {}
        self._next_tenure = 0
        self._acknowledged = 0  # the tracker's acknowledgement count at the last loop round
        status.progress_limit_s = config.progress_limit_s

    # --- lifecycle --------------------------------------------------------------------------

    def listener(self) -> ConsumerRebalanceListener:
        return _Rebalance(self)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Process until ``stop()``; then drain, commit and return. Raises on a fatal error."""
        publisher_task = asyncio.create_task(self._publish_in_order(), name="publisher")
        self.status.last_progress = time.monotonic()  # the stall bound counts from the start
        try:
            while not self._stopping.is_set():
                self._raise_if_failed(publisher_task)
                await self._poll_once()
                self._flush_due_batches()
                self._apply_backpressure()
                if time.monotonic() - self._last_commit >= self.config.commit_interval_s:
                    await self.commit()
                self._note_progress()
                self.status.last_loop = time.monotonic()
        finally:
            drained = await self._drain(deadline_s=self.config.drain_timeout_s)
            await self.commit()
            publisher_task.cancel()
            await asyncio.gather(publisher_task, return_exceptions=True)
            unfinished = self._cancel_inflight()
        self._raise_if_failed(publisher_task)
        if not drained:
            # A stop, not a fault: nothing is lost (at-least-once and exactly-once both read the
            # uncommitted records again), so the stop still ends with exit 0, and says so.
            log.warning("%d records were not finished within NER_DRAIN_TIMEOUT_S=%gs; they stay uncommitted "
                        "and their partitions' next owner reads them again", unfinished, self.config.drain_timeout_s,
                        extra={"records": unfinished})

    def _cancel_inflight(self) -> int:
        """Stop the engine calls still under way (nothing will publish them); returns the records left."""
        while not self.inflight.empty():
            self.inflight.get_nowait().task.cancel()
        return self.tracker.pending()

    def _note_progress(self) -> None:
        # The publisher advances when a record is acknowledged (or a batch published, which
        # _publish_in_order notes); with nothing pending there is nothing to wait for.
        acknowledged = self.tracker.acknowledged()
        if acknowledged != self._acknowledged or self.tracker.pending() == 0:
            self._acknowledged = acknowledged
            self.status.last_progress = time.monotonic()

    def _raise_if_failed(self, publisher_task: asyncio.Task[None]) -> None:
        if self._fatal is None and publisher_task.done() and not publisher_task.cancelled():
            self._fatal = publisher_task.exception()
        if self._fatal is not None:
            raise stopping_for(self._fatal) from self._fatal

    # --- intake ---------------------------------------------------------------------------

    async def _poll_once(self) -> None:
        wait = self.batcher.seconds_until_due()
        timeout_ms = _POLL_MS if wait is None else max(1, min(_POLL_MS, int(wait * 1000)))
        started_ns = now_ns() if self.tracing.enabled else 0
        try:
            fetched = await self.consumer.getmany(timeout_ms=timeout_ms,
                                                  max_records=self.config.max_batch_documents * 4)
        except KafkaError as exc:  # a permission denied is a stop that names it; anything else as it was
            denied = not_authorized(exc, reading=True)
            if denied is None:
                raise
            raise FatalStreamError(f"consuming: {denied}", refused=True) from exc
        if self.tracing.enabled and fetched:
            self.tracing.poll(started_ns, [r.headers for records in fetched.values() for r in records])
        tenures = {tp: self._tenures.get(tp) for tp in fetched}
        resolved = await self._resolve_schemas(fetched)
        for tp, records in fetched.items():
            if self._tenures.get(tp) != tenures[tp]:
                continue  # a rebalance came while the schemas were fetched: the new tenure set its position
            if not resolved or tp in self._on_hold or not self.tracker.is_assigned(tp):
                # Being revoked, rewound or set up: hand the records back so that whoever reads the
                # partition next (maybe this worker) starts at the first of them.
                if tp in self.consumer.assignment():
                    self.consumer.seek(tp, records[0].offset)
                continue
            await self._accept(tp, records)

    async def _resolve_schemas(self, fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> bool:
        """Schema Registry formats: fetch the writer schemas the records name before parsing them.
        While the registry does not answer, the records wait here, neither parsed nor tracked;
        False when a stop came first (they are then handed back, not processed)."""
        if self.resolver is None or not fetched:
            return True

        def still_alive() -> None:  # waiting for the registry is not a stalled loop
            self.status.last_loop = time.monotonic()

        values = (record.value for records in fetched.values() for record in records)
        return await self.resolver.resolve(values, self._stopping, on_wait=still_alive)

    async def _accept(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        progress = self.tracker.progress(tp)
        self._first_read.setdefault(tp, records[0].offset)
        items: list[WorkItem] = []
        for record in records:
            progress.track(record.offset)
            self.metrics.records_received.inc()
            items.append(WorkItem(source=SourceRecord(tp, record.offset, record.key, record.value,
                                                      tuple(record.headers), record.timestamp, progress)))
        with self.tracing.tokenize():
            self.annotator.prepare(items, lambda item: item.source.value)
        for item in items:
            self.batcher.add(item, item.tokens)

    # --- batches --------------------------------------------------------------------------

    def _flush_due_batches(self, force: bool = False) -> None:
        while (force or self.inflight.qsize() < self.config.max_concurrent_batches) and (
            self.batcher.due() or (force and len(self.batcher))
        ):
            items = self.batcher.take()
            tokens = sum(item.tokens for item in items)
            trace = self.tracing.batch(item.source.headers for item in items)
            task = asyncio.create_task(self._annotate([item.encoded for item in items if item.encoded], trace))
            self.inflight.put_nowait(InflightBatch(items, tokens, task, trace))
            self.inflight_tokens += tokens
            self.metrics.batch_documents.observe(sum(1 for item in items if item.encoded is not None))
            self.metrics.batch_tokens.observe(tokens)

    async def _annotate(self, documents: list[EncodedText], trace: BatchTrace) -> BatchResult:
        backoff = Backoff(_ENGINE_RETRY_BASE_S, _ENGINE_RETRY_MAX_S)
        while True:
            started_ns = now_ns() if self.tracing.enabled else 0
            try:
                # An engine that never answers must not hold its partitions (and every commit
                # behind them) for good: past the timeout the call is a failed attempt like any other.
                result = await asyncio.wait_for(self.annotator.annotate_encoded(documents),
                                                timeout=self.config.engine_timeout_s)
            except TimeoutError:
                failure: Exception = TimeoutError(f"the engine did not answer a batch within "
                                                  f"{self.config.engine_timeout_s:g}s (NER_ENGINE_TIMEOUT_S)")
            except Exception as exc:
                failure = exc
            else:
                self.metrics.engine_seconds.observe(result.engine_seconds)
                self.metrics.tokens_processed.inc(result.tokens)
                if self.tracing.enabled:
                    trace.engine(started_ns, result.engine_seconds, now_ns())
                return result
            self.metrics.engine_errors.inc()
            if backoff.failures + 1 >= _ENGINE_ATTEMPTS:
                raise failure
            log.warning("engine batch failed (attempt %d of %d): %s", backoff.failures + 1, _ENGINE_ATTEMPTS, failure,
                        extra={"batch_size": len(documents), "attempt": backoff.failures + 1, "error": repr(failure)})
            await backoff.wait()

    async def _publish_in_order(self) -> None:
        """Await batches in the order they were formed, so outputs keep their input order."""
        while True:
            batch = await self.inflight.get()
            result = await batch.task  # an engine that failed every attempt stops the worker here
            outcomes = interleave([item.rejection if item.rejection else item for item in batch.items],
                                  result.entities)
            entries: list[tuple[SourceRecord, Outcome]] = []
            for item, outcome in zip(batch.items, outcomes, strict=True):
                if item.source.progress.detached:
                    continue  # revoked meanwhile: the partition's new owner processes it
                if isinstance(outcome, Rejection):
                    entries.append((item.source, outcome))
                else:
                    assert item.document is not None
                    entries.append((item.source, Annotated(item.document, outcome, self._ner_block(item, result))))
            with batch.trace.publish():
                if self.tracing.enabled:  # each output continues its input's trace
                    for source, _ in entries:
                        source.headers = tuple(batch.trace.record_headers(source.headers))
                await self.publisher.publish(entries)
            self.status.last_progress = time.monotonic()
            batch.trace.end()
            self.inflight_tokens -= batch.tokens

    def _ner_block(self, item: WorkItem, result: BatchResult) -> dict[str, object]:
        source = item.source
        position = {"topic": source.tp.topic, "partition": source.tp.partition, "offset": source.offset}
        return ner_block(self.annotator.model_name, position,
                         document_engine_seconds=engine_share(result.engine_seconds, item.tokens, result.tokens))

    # --- flow control and commits ---------------------------------------------------------

    def _apply_backpressure(self) -> None:
        records = self.tracker.pending()
        tokens = self.inflight_tokens + self.batcher.tokens
        self.metrics.inflight_records.set(records)
        self.metrics.inflight_tokens.set(tokens)
        over = records >= self.config.max_inflight_records or tokens >= self.config.max_inflight_tokens
        room = (records < self.config.max_inflight_records * _RESUME_FRACTION
                and tokens < self.config.max_inflight_tokens * _RESUME_FRACTION)
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
            # aiokafka retries a retriable commit error (no coordinator) without end: bounded here,
            # a commit that does not answer counts as failed and the next commit tries again.
            with self.tracing.commit(len(offsets)):
                await asyncio.wait_for(self.consumer.commit(offsets), timeout=_COMMIT_TIMEOUT_S)
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            # Nothing is lost: the records stay uncommitted and are read again by their owner.
            self.metrics.commit_failures.inc()
            denied = not_authorized(exc)
            if denied is not None:  # no later commit would pass either: the same stop as a denied write
                self._fatal = self._fatal or FatalStreamError(f"offset commit: {denied}", refused=True)
            log.warning("offset commit failed: %r", exc,
                        extra={"partitions": len(offsets), "error": repr(exc)})
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
            if self._fatal is not None:
                return False
            self._flush_due_batches(force=True)
            await asyncio.sleep(0.01)
        return self.tracker.pending(chosen) == 0

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._on_hold |= revoked
        self.metrics.rebalances.labels("revoked").inc()
        finished = await self._drain(deadline_s=self.config.drain_timeout_s, partitions=revoked)
        if not finished:
            log.warning("revoke: in-flight work of %d partitions did not finish in %.1fs; not committing it",
                        len(revoked), self.config.drain_timeout_s, extra={"partitions": len(revoked)})
        await self.commit(revoked)
        self.batcher.remove(lambda item: item.source.tp not in revoked)
        self.tracker.revoke(revoked)
        for tp in revoked:
            self._tenures.pop(tp, None)
            self._first_read.pop(tp, None)
            self._rewound.pop(tp, None)
        await self.publisher.partitions_revoked(sorted(revoked))
        for tp in revoked:
            self.metrics.forget_lag(tp.topic, tp.partition)
        self._on_hold -= revoked

    async def rewind(self, tp: TopicPartition, cause: BaseException | None) -> None:
        """Forget the in-flight work of ``tp`` and read it again from its committed offset.

        Used after a failed write or an aborted transaction (``cause``); a permission the broker
        denied stops the worker instead (see below). If the partition is still assigned to this
        worker, the publisher first takes it up again (exactly-once: a new producer with
        the partition's transactional id, which fences every older one, this worker's own
        included), and only then is the committed offset read: a transaction of an older owner
        is settled by then. A partition without a committed offset goes back to the first offset
        this worker read from it. Rewinding to the same offset again and again backs off, and
        after ``_MAX_REWINDS`` stops the worker: the fault is not going away by itself.
        """
        denied = not_authorized(cause)
        if denied is not None:
            # Policy: a permission denied is not the record's fault (dead-lettering would stand in
            # for every record of the partition, a flood that moves it past outputs never
            # written) nor a passing one (each rewind would meet the same refusal until someone
            # grants the ACL): the worker stops at once, naming the ACL. The failed write is
            # never acknowledged, so nothing is committed past it; the records are read again
            # once the worker runs with the permission.
            self._fatal = self._fatal or FatalStreamError(f"{tp.topic}-{tp.partition}: {denied}", refused=True)
            return
        if not self.tracker.is_assigned(tp):
            return
        self._on_hold.add(tp)  # records fetched meanwhile are skipped, not tracked out of order
        tenure = self._tenures.get(tp)

        def overtaken() -> bool:
            # Revoked, or revoked and assigned again, while the rewind waited: the new tenure set
            # its own position and may be reading from it already; a seek now would read records
            # twice (and track them out of order), and a partition gone cannot be sought at all.
            return self._tenures.get(tp) != tenure or tp not in self.consumer.assignment()

        try:
            self.tracker.revoke([tp])
            self.batcher.remove(lambda item: item.source.tp != tp)
            if overtaken():
                return
            await self.publisher.partitions_assigned([tp])
            if overtaken():
                return
            committed = await self._read_committed(tp)
            if overtaken():
                return
            position = self._first_read.get(tp) if committed is None else committed
            if not await self._back_off(tp, position, isinstance(cause, ProducerFenced)) or overtaken():
                return
            if position is not None:  # None: nothing was read yet, the position has not moved
                self.consumer.seek(tp, position)
            self.tracker.assign([tp])
            self.tracker.progress(tp).committed = committed
            self.metrics.rewinds.inc()
        except Exception as exc:  # cannot take the partition up again: stop rather than strand it
            self._fatal = self._fatal or FatalStreamError(f"{tp}: cannot rewind the partition: {exc!r}")
        finally:
            if self._tenures.get(tp) == tenure:  # a new tenure's hold is its own to lift
                self._on_hold.discard(tp)

    async def _read_committed(self, tp: TopicPartition) -> int | None:
        # aiokafka retries a retriable OffsetFetch error without end: bounded here, and past the
        # bound the caller stops the worker rather than guess where the partition stands.
        try:
            return await asyncio.wait_for(self.consumer.committed(tp), timeout=_COMMITTED_READ_TIMEOUT_S)
        except TimeoutError:
            raise TimeoutError(f"{tp.topic}-{tp.partition}: the group coordinator did not answer the committed "
                               f"offset within {_COMMITTED_READ_TIMEOUT_S:g}s") from None

    async def _back_off(self, tp: TopicPartition, position: int | None, fenced: bool) -> bool:
        """Wait before a repeated rewind to the same offset; False (and stop) after too many."""
        last, count = self._rewound.get(tp, (None, 0))
        count = count + 1 if last == position else 1
        self._rewound[tp] = (position, count)
        if count > _MAX_REWINDS:
            self._fatal = self._fatal or FatalStreamError(
                f"{tp.topic}-{tp.partition}: rewound {_MAX_REWINDS} times to offset {position} without getting "
                "past it; the last write errors are logged above"
            )
            return False
        log.warning("%s-%d: %srewinding to offset %s (%d of at most %d in a row)", tp.topic, tp.partition,
                    "fenced; " if fenced else "", position, count, _MAX_REWINDS)
        if count > 1:
            await asyncio.sleep(backoff_delay(count - 2, _REWIND_BACKOFF_S, _REWIND_BACKOFF_MAX_S))
        return True

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._on_hold |= assigned  # until the publisher is ready for them (exactly-once producers)
        for tp in assigned:
            self._tenures[tp] = self._next_tenure
            self._next_tenure += 1
        try:
            await self.publisher.partitions_assigned(sorted(assigned))
            if self.publisher.fences_previous_owner:
                await self._start_after_fencing(assigned)
            self.tracker.assign(assigned)
        except Exception as exc:  # e.g. no transactional producer can start: stop, do not strand them
            self._fatal = self._fatal or FatalStreamError(
                f"cannot take up the assigned partitions {sorted(f'{tp.topic}-{tp.partition}' for tp in assigned)}: "
                f"{exc if isinstance(exc, NotAuthorizedError) else repr(exc)}",
                refused=refused_for_good(exc))
            return
        finally:
            self._on_hold -= assigned
        self.status.group_joined = True
        self.metrics.rebalances.labels("assigned").inc()
        self.metrics.assigned_partitions.set(len(self.consumer.assignment()))
        if self._paused and assigned:
            self.consumer.pause(*assigned)
        log.info("assigned partitions: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))

    async def _start_after_fencing(self, assigned: set[TopicPartition]) -> None:
        """Exactly-once: seek each new partition to its committed offset as read *after* fencing.

        aiokafka reads the committed offsets of newly assigned partitions itself, in a task it
        starts before it calls ``on_partitions_assigned``, so concurrently with (and mostly before)
        the fencing that the publisher's ``partitions_assigned`` does; and it reads them with
        OffsetFetch v1-v3, which has no ``require_stable`` flag (v7, KIP-447) and no
        UNSTABLE_OFFSET_COMMIT answer. A transaction of the previous owner that is still
        committing is not in that read: starting there would process its records again, and
        publish them twice. Starting the partition's transactional producer (InitProducerId)
        returns only once the broker has settled every transaction of the same id (it answers
        CONCURRENT_TRANSACTIONS until then), so the offset read now includes it.
        """
        partitions = sorted(assigned)
        offsets = await asyncio.gather(*(self._read_committed(tp) for tp in partitions))
        for tp, committed in zip(partitions, offsets, strict=True):
            if committed is not None:  # None: no commit at all, the reset policy's position stands
                self.consumer.seek(tp, committed)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    # aiokafka awaits these hooks inside the rebalance, before rejoining: draining here is what
    # keeps a revoked partition from being committed past unprocessed records.
    def __init__(self, runner: StreamRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._runner.on_assigned(set(assigned))
