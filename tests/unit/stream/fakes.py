"""A broker in memory, with a consumer and producers that behave as aiokafka 0.14 documents.

Only what the stream loop and the publishers call is there, and it answers as aiokafka does:

* ``AIOKafkaConsumer.getmany`` returns records of assigned, not paused partitions from their fetch
  positions (no records of a paused partition); ``seek`` moves a fetch position and drops what was
  fetched ahead; ``seek``, ``pause``, ``resume`` and ``commit`` refuse a partition that is not
  assigned (``IllegalStateError``); ``committed`` answers the group's offset or None; a rebalance
  is eager (every partition is revoked, then the new assignment given) and resets the pause flags;
  the new partitions' positions come from the group's offsets as read *before*
  ``on_partitions_assigned`` (aiokafka's commit refresh task starts before the hook is called).
* ``AIOKafkaProducer.start`` of a transactional producer (InitProducerId) fences older producers of
  its id and answers only once their transaction still committing is settled (``committing``).
* ``AIOKafkaProducer.send`` returns a future that the broker settles later (here: the test, or at
  once with ``auto_ack``); a transactional producer refuses ``send`` outside a transaction
  (``IllegalOperation``); ``transaction()`` begins, then commits, or aborts when its body raised;
  a committed transaction makes its records and its offsets visible at once, an aborted one
  never does (what a ``read_committed`` reader sees).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import IllegalOperation, IllegalStateError, KafkaError

from worker.annotator import Annotator, BatchResult
from worker.records import ParseOptions
from worker.settings import Settings
from worker.stream.config import RunnerConfig
from worker.stream.health import StreamStatus
from worker.stream.metrics import WorkerMetrics
from worker.stream.publisher import Publisher
from worker.stream.runner import StreamRunner
from worker.stream.sink import Rewind, Sink
from worker.stream.transactions import TransactionalPublisher
from worker.stream.writer import RecordWriter

INPUT = "in"
GROUP = "group"
SETTINGS = Settings()


@dataclass
class Written:
    topic: str
    value: bytes | None
    key: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]]

    def source_offset(self) -> int:
        if self.topic == SETTINGS.dead_letter_topic:
            return int(dict(self.headers)["__connect.errors.offset"])
        return int(orjson.loads(self.value or b"{}")["ner"]["source"]["offset"])


@dataclass
class FakeBroker:
    """Input partitions, what was written (visible to read_committed readers) and the group's offsets."""

    logs: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = field(default_factory=dict)
    written: list[Written] = field(default_factory=list)
    group_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    committing: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    """Offsets of transactions still committing, by transactional id: not in ``group_offsets`` until
    a producer with that id starts (the broker answers InitProducerId only once they are settled)."""

    def fill(self, tp: TopicPartition, values: Iterable[bytes]) -> None:
        records = self.logs.setdefault(tp, [])
        for value in values:
            offset = len(records)
            records.append(ConsumerRecord(tp.topic, tp.partition, offset, 1_700_000_000_000, 0, None, value,
                                          None, 0, len(value), ()))

    def written_offsets(self, topic: str | None = None) -> list[int]:
        """Source offsets of what was written (to ``topic``), in write order."""
        return [w.source_offset() for w in self.written if topic is None or w.topic == topic]


class FakeConsumer:
    def __init__(self, broker: FakeBroker, auto_offset_reset: str = "earliest") -> None:
        self.broker = broker
        self.auto_offset_reset = auto_offset_reset
        self.listener: ConsumerRebalanceListener | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commit_error: KafkaError | None = None
        self.committed_reads = 0
        self.committed_gate: asyncio.Event | None = None
        """When set, the next ``committed`` call waits for it (a slow OffsetFetch)."""

    # --- group membership (the coordinator's side) ---

    async def rebalance(self, assignment: Iterable[TopicPartition]) -> None:
        """Eager rebalance: revoke everything, then assign ``assignment`` (positions from the group)."""
        assert self.listener is not None
        await self.listener.on_partitions_revoked(set(self._positions))
        self._positions.clear()
        self._paused.clear()
        for tp in assignment:
            committed = self.broker.group_offsets.get(tp)
            self._positions[tp] = committed if committed is not None else self._reset_position(tp)
        await self.listener.on_partitions_assigned(set(self._positions))

    def _reset_position(self, tp: TopicPartition) -> int:
        return 0 if self.auto_offset_reset == "earliest" else len(self.broker.logs.get(tp, []))

    def _assigned(self, tp: TopicPartition) -> None:
        if tp not in self._positions:
            raise IllegalStateError(f"No current assignment for partition {tp}")

    # --- the AIOKafkaConsumer API the worker uses ---

    def assignment(self) -> set[TopicPartition]:
        return set(self._positions)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        # aiokafka may wait for a fetch, but it takes the records it returns from the positions as
        # they are after the wait, in the same step as it returns them (a seek meanwhile drops
        # what was fetched ahead): the yield comes first here, then the records.
        await asyncio.sleep(0)
        budget = max_records if max_records is not None else 500
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in sorted(partitions or self._positions):
            if tp in self._paused or budget <= 0:
                continue
            position = self._positions[tp]
            records = self.broker.logs.get(tp, [])[position : position + budget]
            if records:
                fetched[tp] = records
                self._positions[tp] = records[-1].offset + 1
                budget -= len(records)
        if not fetched:  # aiokafka waits up to timeout_ms when nothing is buffered; shorter here
            await asyncio.sleep(0.001)
        return fetched

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("Offset must be a positive integer")
        self._assigned(tp)
        self._positions[tp] = offset
        self.seeks.append((tp, offset))

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.seek(tp, 0)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.seek(tp, len(self.broker.logs.get(tp, [])))

    def position_of(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._assigned(tp)
            self._paused.add(tp)

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._assigned(tp)
            self._paused.discard(tp)

    def paused(self) -> set[TopicPartition]:
        return {tp for tp in self._paused if tp in self._positions}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp in offsets:
            self._assigned(tp)
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append(dict(offsets))
        self.broker.group_offsets.update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        self.committed_reads += 1
        gate, self.committed_gate = self.committed_gate, None
        if gate is not None:
            await gate.wait()
        return self.broker.group_offsets.get(tp)


class FakeProducer:
    """``send`` answers with a future the broker settles later; ``auto_ack`` settles it at once."""

    def __init__(self, broker: FakeBroker, *, auto_ack: bool = True, transactional_id: str | None = None) -> None:
        self.broker = broker
        self.auto_ack = auto_ack
        self.transactional_id = transactional_id
        self.pending: list[tuple[Written, asyncio.Future[Any]]] = []
        self.refuse: Callable[[Written], KafkaError | None] = lambda written: None
        """Settles a send with this error instead of writing it (None: write it)."""
        self.refuse_send: Callable[[Written], KafkaError | None] = lambda written: None
        """Raised by ``send`` itself (aiokafka: KafkaTimeoutError when the buffer stays full)."""
        self.started = self.stopped = False
        self._txn: list[Written] | None = None
        self._txn_offsets: dict[TopicPartition, int] = {}
        self.commit_error: KafkaError | None = None
        self.transactions: list[str] = []

    async def start(self) -> None:
        # InitProducerId: a transaction of this id still committing is settled before it answers.
        if self.transactional_id is not None:
            self.broker.group_offsets.update(self.broker.committing.pop(self.transactional_id, {}))
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: list[tuple[str, bytes]] | None = None) -> asyncio.Future[Any]:
        assert not (value is None and key is None), "Need at least one: key or value"
        if self.transactional_id is not None and self._txn is None:
            raise IllegalOperation("Can't send messages while not in transaction")
        written = Written(topic, value, key, partition, list(headers or []))
        error = self.refuse_send(written)
        if error is not None:
            raise error
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((written, future))
        if self.auto_ack:
            self.settle()
        return future

    def settle(self, count: int | None = None, *, only: Callable[[Written], bool] = lambda w: True) -> int:
        """The broker answers pending sends (the first ``count`` matching ``only``); returns how many."""
        settled, keep = 0, []
        for written, future in self.pending:
            if (count is None or settled < count) and only(written):
                error = self.refuse(written)
                if error is not None:
                    future.set_exception(error)
                else:
                    (self._txn if self._txn is not None else self.broker.written).append(written)
                    future.set_result(None)
                settled += 1
            else:
                keep.append((written, future))
        self.pending = keep
        return settled

    # --- transactions ---

    async def begin_transaction(self) -> None:
        if self.transactional_id is None:
            raise IllegalOperation("You need to configure transaction_id to use transactions")
        assert self._txn is None, "a transaction is already open"
        self._txn, self._txn_offsets = [], {}

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        if self._txn is None:
            raise IllegalOperation("Not in the middle of a transaction")
        self._txn_offsets.update(offsets)

    async def commit_transaction(self) -> None:
        assert self._txn is not None
        error, self.commit_error = self.commit_error, None
        if error is not None:
            # The producer is left in an error state with the transaction open; starting another
            # producer with the same id aborts it on the broker, so none of it is ever visible.
            self.transactions.append("commit failed")
            raise error
        self.broker.written.extend(self._txn)
        self.broker.group_offsets.update(self._txn_offsets)
        self._txn = None
        self.transactions.append("committed")

    async def abort_transaction(self) -> None:
        self._txn = None
        self.transactions.append("aborted")

    def transaction(self) -> _Transaction:
        return _Transaction(self)


class _Transaction:
    # aiokafka's TransactionContext: begin; commit when the body succeeded, abort when it raised.
    def __init__(self, producer: FakeProducer) -> None:
        self._producer = producer

    async def __aenter__(self) -> _Transaction:
        await self._producer.begin_transaction()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            await self._producer.abort_transaction()
        else:
            await self._producer.commit_transaction()


@dataclass
class _Document:
    # What the runner and the fake engine need of worker.text.tokenize.EncodedText.
    text: str
    windows: list[list[int]]


class FakeAnnotator(Annotator):
    """The worker's own parsing (``Annotator.prepare``); one token per word; one entity ``W`` per document.

    ``hold(n)`` keeps the engine's n-th batch (0-based) from finishing until ``release(n)``.
    """

    def __init__(self) -> None:  # no engine, tokenizer or decoder: tokenize and annotate are fakes
        self.parse = ParseOptions.from_settings(SETTINGS)
        self.batches: list[list[str]] = []
        self._gates: dict[int, asyncio.Event] = {}

    @property
    def model_name(self) -> str:
        return "fake-model"

    def hold(self, *batches: int) -> None:
        for n in batches:
            self._gates[n] = asyncio.Event()

    def release(self, *batches: int) -> None:
        for n in batches:
            self._gates[n].set()

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        return [_Document(text, [list(range(len(text.split())))]) for text in texts]

    async def annotate_encoded(self, documents: list[_Document]) -> BatchResult:
        n = len(self.batches)
        self.batches.append([doc.text for doc in documents])
        gate = self._gates.get(n)
        if gate is not None:
            await gate.wait()
        entities: list[Any] = [[{"label": "W", "text": doc.text, "start": 0, "end": len(doc.text), "score": 1.0}]
                               for doc in documents]
        tokens = sum(len(doc.windows[0]) for doc in documents)
        return BatchResult(entities, 0.001, len(documents), tokens)


def config(**overrides: Any) -> RunnerConfig:
    values: dict[str, Any] = {
        "max_batch_documents": 2, "max_batch_tokens": 10_000, "max_batch_wait_s": 0.0,
        "max_concurrent_batches": 4, "max_inflight_records": 1000, "max_inflight_tokens": 1_000_000,
        "commit_interval_s": 0.0, "drain_timeout_s": 0.2, "engine_timeout_s": 5.0, "progress_limit_s": 60.0,
        "auto_offset_reset": "earliest",
    }
    return RunnerConfig(**{**values, **overrides})


def documents(*texts: str) -> list[bytes]:
    return [orjson.dumps({"text": text}) for text in texts]


class World:
    """A broker, its consumer, the fake engine and a runner with either publisher.

    At-least-once: one shared producer (``producer``). Exactly-once: a transactional producer per
    input partition, each kept in ``txn_producers`` in the order they were made.
    """

    def __init__(self, *, exactly_once: bool = False, auto_ack: bool = True, resolver: Any = None,
                 **limits: Any) -> None:
        self.broker = FakeBroker()
        self.consumer = FakeConsumer(self.broker)
        self.annotator = FakeAnnotator()
        self.metrics = WorkerMetrics()
        self.producer = FakeProducer(self.broker, auto_ack=auto_ack)
        self.txn_producers: list[FakeProducer] = []
        sink = self._transactional if exactly_once else self._at_least_once
        self.runner = StreamRunner(config(**limits), self.consumer, sink, self.annotator,
                                   self.metrics, StreamStatus(), resolver=resolver)
        self.consumer.listener = self.runner.listener()

    def _writer(self) -> RecordWriter:
        return RecordWriter(SETTINGS, self.metrics, output_partitions=1, dead_letter_partitions=1)

    def _at_least_once(self, rewind: Rewind) -> Sink:
        return Publisher(self.producer, self._writer(), rewind)

    def _transactional(self, rewind: Rewind) -> Sink:
        def make(txn_id: str) -> Any:
            self.txn_producers.append(FakeProducer(self.broker, transactional_id=txn_id))
            return self.txn_producers[-1]

        return TransactionalPublisher(self._writer(), make, group_id=GROUP, id_prefix="ner", rewind=rewind,
                                      start_timeout_s=1.0, transaction_timeout_s=5.0)

    def rewinds(self) -> float:
        return self.metrics.registry.get_sample_value("ner_partition_rewinds_total") or 0.0


def play(scenario: Callable[[World], Awaitable[None]], **options: Any) -> World:
    """Run ``scenario`` beside the runner's loop, then stop the loop (drain and final commit)."""

    async def main() -> World:
        world = World(**options)
        loop = asyncio.create_task(world.runner.run())
        try:
            await scenario(world)
        finally:
            world.runner.stop()
            await asyncio.wait_for(loop, 5)
        return world

    return asyncio.run(main())


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Let the loop run until ``condition`` holds (fails the test after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)
