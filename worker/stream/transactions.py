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

from worker.records import OUTPUT_REJECTED, Rejection
from worker.retry import Backoff
from worker.stream.entries import Outcome, Outgoing, SourceRecord
from worker.stream.refusals import NotAuthorizedError, RefusedDeadLetterError, describe, is_refusal, not_authorized
from worker.stream.sink import Rewind
from worker.stream.writer import RecordWriter

log = logging.getLogger(__name__)

ProducerFactory = Callable[[str], AIOKafkaProducer]

TRANSACTION_MARGIN_S = 5.0
_REVOKE_WAIT_S = 5.0


def transactional_id(prefix: str, group_id: str, tp: TopicPartition) -> str:
    """Stable per input partition, so that the partition's next owner fences the previous one.

    The parts are joined by dots, so a dot inside the group or topic is escaped (``%2E``, and
    ``%`` as ``%25``): group ``a.b`` with topic ``c`` and group ``a`` with topic ``b.c`` must not
    share an id (they would fence each other). Names without either character keep the plain id.
    The prefix stays as it is (ACLs on transactional ids name it); with exactly three dots after
    it, two ids are equal only when their prefixes are.
    """
    return f"{prefix}.{_escape(group_id)}.{_escape(tp.topic)}.{tp.partition}"


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(".", "%2E")


class TransactionalPublisher:
    fences_previous_owner = True  # the runner reads each new partition's start offset after it

    def __init__(self, writer: RecordWriter, make_producer: ProducerFactory, *, group_id: str, id_prefix: str,
                 rewind: Rewind, start_timeout_s: float, transaction_timeout_s: float) -> None:
        self._start_timeout_s = start_timeout_s
        self._transaction_bound_s = transaction_timeout_s + TRANSACTION_MARGIN_S
        self._writer = writer
        self._make_producer = make_producer
        self._group_id = group_id
        self._id_prefix = id_prefix
        self._rewind = rewind
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._suspects: dict[TopicPartition, set[int]] = {}
        self._running: dict[TopicPartition, asyncio.Future[None]] = {}  # the transaction in progress

    async def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None:
        # Starting the producer runs InitProducerId: this is the moment the previous owner of the
        # partition is fenced and its unfinished transaction aborted.
        await asyncio.gather(*(self._start_producer(tp) for tp in partitions if tp not in self._producers))

    async def _start_producer(self, tp: TopicPartition) -> None:
        backoff = Backoff(deadline_s=self._start_timeout_s)
        while True:
            producer = self._make_producer(transactional_id(self._id_prefix, self._group_id, tp))
            try:  # start() itself has no bound (it waits for a coordinator): bounded by the deadline
                await asyncio.wait_for(producer.start(), timeout=max(0.1, backoff.remaining()))
            except (KafkaError, TimeoutError) as exc:
                await _stop(producer)
                denied = not_authorized(exc)
                if denied is not None:  # an ACL missing: no retry grants it
                    raise NotAuthorizedError(denied) from exc
                if backoff.exhausted():
                    raise
                log.warning("%s: transactional producer cannot start yet (%r); retrying", tp, exc,
                            extra={"topic": tp.topic, "partition": tp.partition, "error": repr(exc)})
                await backoff.wait()
                continue
            self._producers[tp] = producer
            return

    async def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None:
        # A transaction already under way is let finish (briefly) rather than having its producer
        # stopped under it: its outputs and offsets commit or abort together either way.
        running = [self._running[tp] for tp in partitions if tp in self._running]
        if running:
            await asyncio.wait(running, timeout=_REVOKE_WAIT_S)
        for tp in partitions:
            self._suspects.pop(tp, None)
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
        """One transaction for the records, or one per stretch when some are refusal suspects.

        A suspect (its write was refused in an earlier, aborted transaction) gets a transaction
        of its own; refused again, it is replaced by an ``output_rejected`` dead letter committed
        with its offset, so that the dead letter is written once and the partition moves on.
        """
        suspects = self._suspects.get(tp, set())
        for stretch in _stretches(records, suspects):
            alone = len(stretch) == 1 and stretch[0].source.offset in suspects
            refused = await self._commit(tp, stretch)
            if refused is None:
                continue
            if not (alone and refused):
                return  # aborted and rewound (or fenced): the rest is read again
            if not await self._dead_letter_refused(tp, stretch[0], refused[0]):
                return

    async def _commit(self, tp: TopicPartition, records: list[Outgoing]) -> list[BaseException] | None:
        """Commit the records with their offsets; None when committed, else the refusals seen.

        The transaction runs as a task of its own, awaited for at most the transaction timeout
        (plus a margin): by then the broker has aborted it, and a producer stopped under it (a
        revoke that could not wait) would otherwise leave its futures unresolved for good.
        """
        producer = self._producers.get(tp)
        if producer is None or records[0].source.progress.detached:
            return []  # the partition was revoked or rewound meanwhile; its records are read again
        position = records[-1].source.offset + 1
        refusals: list[BaseException] = []
        task = asyncio.ensure_future(self._transaction(producer, tp, records, position, refusals))
        self._running[tp] = task
        try:
            await asyncio.wait({task}, timeout=self._transaction_bound_s)
        finally:
            if self._running.get(tp) is task:
                del self._running[tp]
        error: BaseException | None
        if task.done():
            error = task.exception()
        else:
            task.cancel()  # not awaited: its abort may wait on a stopped producer for ever
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            error = TimeoutError(f"the transaction did not end within {self._transaction_bound_s:g}s")
        if isinstance(error, ProducerFenced):
            log.warning("%s: fenced (%s); taking the partition up again if it is still ours", tp, error,
                        extra={"topic": tp.topic, "partition": tp.partition, "error": repr(error)})
            await self._after_abort(tp, producer, error)
            return []
        if isinstance(error, (TimeoutError, KafkaError)):
            log.warning("%s: transaction aborted (%r)", tp, error,
                        extra={"topic": tp.topic, "partition": tp.partition, "batch_size": len(records),
                               "error": repr(error)})
            await self._after_abort(tp, producer, error, rewind=not refusals or len(records) > 1)
            return refusals
        if error is not None:
            raise error
        for record in records:
            record.on_written()
            self._suspects.get(tp, set()).discard(record.source.offset)
        records[0].source.progress.committed = position
        return None

    async def _transaction(self, producer: AIOKafkaProducer, tp: TopicPartition, records: list[Outgoing],
                           position: int, refusals: list[BaseException]) -> None:
        async with producer.transaction():
            futures = [await self._writer.send(producer, record) for record in records]
            results = await asyncio.gather(*futures, return_exceptions=True)
            failures = [(r, e) for r, e in zip(records, results, strict=True) if isinstance(e, BaseException)]
            refusals += [e for _, e in failures if is_refusal(e)]
            self._suspects.setdefault(tp, set()).update(r.source.offset for r, e in failures if is_refusal(e))
            if failures:
                raise failures[0][1]
            await producer.send_offsets_to_transaction({tp: position}, self._group_id)

    async def _dead_letter_refused(self, tp: TopicPartition, record: Outgoing, refusal: BaseException) -> bool:
        source = record.source
        if record.topic == self._writer.dead_letter_topic:
            raise RefusedDeadLetterError(f"{source.tp} offset {source.offset}: {describe(refusal)}") from refusal
        log.warning("%s offset %d: %s; dead-lettering it as %s", tp, source.offset, describe(refusal),
                    OUTPUT_REJECTED)
        await self.partitions_assigned([tp])  # the aborted producer was stopped: a new one, same id
        dead_letter = self._writer.dead_letter(source, Rejection(OUTPUT_REJECTED, describe(refusal)))
        refused = await self._commit(tp, [dead_letter])
        if refused:
            raise RefusedDeadLetterError(f"{source.tp} offset {source.offset}: {describe(refused[0])}")
        return refused is None

    async def _after_abort(self, tp: TopicPartition, producer: AIOKafkaProducer, error: BaseException, *,
                           rewind: bool = True) -> None:
        # A producer in an error state cannot start another transaction: it is stopped, and the
        # rewind (or the dead letter) starts a new one with the same id, which also aborts
        # anything the broker still holds open for it. A producer that is no longer the
        # partition's (revoked, and maybe assigned again since with a new producer) only stops:
        # the new tenure is not to be disturbed.
        await _stop(producer)
        if self._producers.get(tp) is not producer:
            return
        del self._producers[tp]
        if rewind:
            await self._rewind(tp, error)


def _stretches(records: list[Outgoing], suspects: set[int]) -> list[list[Outgoing]]:
    """The records cut so that each suspect stands alone, in order."""
    if not suspects:
        return [records]
    stretches: list[list[Outgoing]] = [[]]
    for record in records:
        if record.source.offset in suspects:
            stretches += [[record], []]
        else:
            stretches[-1].append(record)
    return [stretch for stretch in stretches if stretch]


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
