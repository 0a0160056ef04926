"""Faults of the stream on the real broker: writes the broker refuses for good, rewinds of a
partition without a committed offset, and an exactly-once transaction that times out.

Each scenario prints its counts (inputs, outputs, dead letters, lost, duplicated, order
violations) so a run with ``-s`` shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.fixtures.kafka import Record, committed_offsets, create_topics, read_topic, stream_env, stream_names
from tests.integration.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

DELIVERIES = ["at-least-once", "exactly-once"]
SMALL_TOPIC_LIMIT = "65536"
# The text is small (cheap to annotate); the field passed through makes the output ~70 KB:
# over the output topic's max.message.bytes, under the worker's own NER_MAX_PRODUCE_BYTES.
BIG = orjson.dumps({"id": "big", "text": "Anna Schmidt lives in Berlin.", "pad": "x" * 70_000})
MALFORMED = b'{"text": "cut short'


def small(number: int) -> bytes:
    return orjson.dumps({"id": f"doc-{number}", "text": f"Angela Merkel met Li Wei in Paris on day {number}."})


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5,
                                max_request_size=2_000_000)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key, partition=0)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class Accounting:
    """Where each input offset (partition 0) ended up."""

    inputs: int
    outputs: Counter[int]
    dead: Counter[int]
    reasons: dict[int, list[str]]
    messages: dict[int, list[str]]
    order_violations: int

    @classmethod
    def of(cls, inputs: int, outputs: list[Record], dead: list[Record]) -> Accounting:
        out_offsets = [orjson.loads(r.value or b"")["ner"]["source"]["offset"] for r in outputs]
        dead_counts: Counter[int] = Counter()
        reasons: dict[int, list[str]] = {}
        messages: dict[int, list[str]] = {}
        for record in dead:
            headers = {k: v.decode() for k, v in record.headers}
            offset = int(headers["__connect.errors.offset"])
            dead_counts[offset] += 1
            reasons.setdefault(offset, []).append(headers["ner.error.reason"])
            messages.setdefault(offset, []).append(headers["ner.error.message"])
        # A rewind legitimately starts over from an earlier offset (at-least-once); what must not
        # happen is a first appearance of an offset below one already seen.
        first_seen: list[int] = []
        seen: set[int] = set()
        for offset in out_offsets:
            if offset not in seen:
                seen.add(offset)
                first_seen.append(offset)
        violations = sum(1 for a, b in itertools.pairwise(first_seen) if b < a)
        return cls(inputs, Counter(out_offsets), dead_counts, reasons, messages, violations)

    @property
    def lost(self) -> list[int]:
        return [o for o in range(self.inputs) if o not in self.outputs and o not in self.dead]

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in (self.outputs + self.dead).values() if n > 1)

    def report(self, scenario: str) -> str:
        line = (f"{scenario}: inputs={self.inputs} outputs={sum(self.outputs.values())} "
                f"dead_letters={sum(self.dead.values())} lost={len(self.lost)} duplicated={self.duplicated} "
                f"order_violations={self.order_violations}")
        print(line)
        return line


def start_worker(names: dict[str, str], bootstrap: str, tmp_path: Path, **extra: str) -> WorkerProcess:
    env = {**stream_env(names, bootstrap), "NER_COMMIT_INTERVAL_MS": "200", "NER_MAX_LENGTH": "64",
           "NER_STRIDE": "16", **extra}
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    worker.wait_ready()
    return worker


def read_results(bootstrap: str, names: dict[str, str], outputs: int, dead: int,
                 timeout: float) -> tuple[list[Record], list[Record]]:
    out = asyncio.run(read_topic(bootstrap, names["out"], expect=outputs, isolation_level="read_committed",
                                 timeout=timeout))
    dlq = asyncio.run(read_topic(bootstrap, names["dead"], expect=dead, isolation_level="read_committed",
                                 timeout=timeout))
    return out, dlq


def check_refused_record(acc: Accounting, offset: int, delivery: str, rewinds: float, broker_error: str) -> None:
    assert acc.lost == [], acc.lost
    assert acc.order_violations == 0
    assert offset not in acc.outputs
    assert acc.reasons[offset] == ["output_rejected"], acc.reasons  # written once, with its own reason
    assert broker_error in acc.messages[offset][0]
    assert rewinds <= 1  # the refusal is found out once, not looped over
    if delivery == "exactly-once":
        assert acc.duplicated == 0
    else:
        # At most once per rewind: every other input may come back once after the one rewind.
        assert all(n <= 1 + rewinds for n in (acc.outputs + acc.dead).values())


def run_refusal(bootstrap: str, tmp_path: Path, delivery: str, out_config: dict[str, str],
                values: list[tuple[bytes | None, bytes]], dead: int) -> tuple[Accounting, float]:
    """Inputs already on the topic, an output topic with ``out_config``: where each input ends up."""
    names = stream_names("refused")
    asyncio.run(create_topics(bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1},
                              configs={names["out"]: out_config}))
    asyncio.run(produce(bootstrap, names["in"], values))
    worker = start_worker(names, bootstrap, tmp_path, NER_DELIVERY=delivery)
    try:
        out, dlq = read_results(bootstrap, names, outputs=len(values) - dead, dead=dead, timeout=60)
        time.sleep(1)  # a dead letter written twice would show by now
        dlq = asyncio.run(read_topic(bootstrap, names["dead"], expect=dead, isolation_level="read_committed"))
        rewinds = worker.metric("ner_partition_rewinds_total")
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    return Accounting.of(len(values), out, dlq), rewinds


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_an_output_over_the_topics_size_limit_is_dead_lettered_once_and_the_partition_moves_on(
    kafka_bootstrap: str, tmp_path: Path, delivery: str
) -> None:
    values: list[tuple[bytes | None, bytes]] = [(b"bad", MALFORMED), (b"big", BIG)]
    values += [(f"k{n}".encode(), small(n)) for n in range(100)]
    acc, rewinds = run_refusal(kafka_bootstrap, tmp_path, delivery, {"max.message.bytes": SMALL_TOPIC_LIMIT},
                               values, dead=2)
    acc.report(f"max.message.bytes {delivery} rewinds={rewinds:g}")
    check_refused_record(acc, 1, delivery, rewinds, "MESSAGE_SIZE_TOO_LARGE")
    assert acc.reasons[0] == ["invalid_json"] * len(acc.reasons[0])
    assert set(acc.outputs) == set(range(2, 102))


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_a_keyless_output_for_a_compacted_topic_is_dead_lettered_once(
    kafka_bootstrap: str, tmp_path: Path, delivery: str
) -> None:
    values: list[tuple[bytes | None, bytes]] = [(f"k{n}".encode(), small(n)) for n in range(10)]
    values += [(None, small(10))] + [(f"k{n}".encode(), small(n)) for n in range(11, 30)]
    acc, rewinds = run_refusal(kafka_bootstrap, tmp_path, delivery, {"cleanup.policy": "compact"}, values, dead=1)
    acc.report(f"compacted keyless {delivery} rewinds={rewinds:g}")
    check_refused_record(acc, 10, delivery, rewinds, "INVALID_RECORD")
    assert set(acc.outputs) == set(range(30)) - {10}


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_a_rewind_without_a_committed_offset_goes_back_to_the_first_record_read(
    kafka_bootstrap: str, tmp_path: Path, delivery: str
) -> None:
    names = stream_names("rewind")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1},
                              configs={names["out"]: {"max.message.bytes": SMALL_TOPIC_LIMIT}}))
    worker = start_worker(names, kafka_bootstrap, tmp_path, NER_DELIVERY=delivery, NER_AUTO_OFFSET_RESET="latest",
                          NER_COMMIT_INTERVAL_MS="60000")  # nothing committed before the rewind
    try:
        time.sleep(2)  # the group's start position ("latest") is resolved before the records arrive
        first = [] if delivery == "exactly-once" else [(f"k{n}".encode(), small(n)) for n in range(10)]
        values: list[tuple[bytes | None, bytes]] = [*first, (b"big", BIG)]
        values += [(f"k{n}".encode(), small(n)) for n in range(11, 21)]
        asyncio.run(produce(kafka_bootstrap, names["in"], values))
        out, dlq = read_results(kafka_bootstrap, names, outputs=len(values) - 1, dead=1, timeout=45)
        rewinds = worker.metric("ner_partition_rewinds_total")
        code, _ = worker.terminate()
    finally:
        worker.kill()
    acc = Accounting.of(len(values), out, dlq)
    acc.report(f"rewind from latest {delivery} rewinds={rewinds:g}")
    assert code == 0, worker.log()
    big = len(first)
    check_refused_record(acc, big, delivery, rewinds, "MESSAGE_SIZE_TOO_LARGE")
    assert set(acc.outputs) == set(range(len(values))) - {big}


async def stop_inside_a_transaction(bootstrap: str, topic: str, pid: int, tries: int,
                                    abort_timeout_s: float) -> tuple[bool, bool]:
    """SIGSTOP the worker at a moment when partition 0 of ``topic`` has an open transaction (its
    last stable offset behind its end, checked while the worker is stopped), then keep it stopped
    until the broker has rolled that transaction back for its timeout (the last stable offset
    caught up), for at most ``abort_timeout_s``. (caught one open, saw it aborted); the worker is
    left stopped when caught."""
    tp = TopicPartition(topic, 0)
    readers = [AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=level)
               for level in ("read_committed", "read_uncommitted")]

    async def transaction_open() -> bool:
        stable, end = [(await reader.end_offsets([tp]))[tp] for reader in readers]
        return stable < end

    async def transaction_left_open() -> bool:
        # A transaction whose commit was already sent ends at the broker while the worker is
        # stopped; only one still open a moment later is the worker's own, left to time out.
        if not await transaction_open():
            return False
        await asyncio.sleep(0.5)
        return await transaction_open()

    for reader in readers:
        await reader.start()
    try:
        for attempt in range(tries):
            # After each SIGCONT the worker works off its backlog in one quick transaction and then
            # idles; a fixed pause would stop it in the same idle phase every time, so the pause
            # sweeps 0-190 ms past the restart to land inside that transaction.
            await asyncio.sleep(0.01 * (attempt % 20))
            os.kill(pid, signal.SIGSTOP)
            if await transaction_left_open():
                break
            os.kill(pid, signal.SIGCONT)
        else:
            return False, False
        # The broker looks for timed-out transactions every 10 s (its cleanup interval): waiting
        # for the abort itself, not for a fixed time, is what a loaded machine cannot outrun.
        deadline = time.monotonic() + abort_timeout_s
        while await transaction_open():
            if time.monotonic() > deadline:
                return True, False
            await asyncio.sleep(0.25)
        return True, True
    finally:
        for reader in readers:
            await reader.stop()


def wait_for_log(worker: WorkerProcess, words: tuple[str, ...], timeout_s: float) -> bool:
    """True once one of ``words`` is in the worker's whole log (not just its tail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
        if any(word in text for word in words):
            return True
        time.sleep(0.2)
    return False


class SteadyInput:
    """Produces small documents at a steady rate in a thread until stopped (a live input stream)."""

    def __init__(self, bootstrap: str, topic: str, per_second: int, partitions: int = 1) -> None:
        self.bootstrap, self.topic, self.per_second, self.partitions = bootstrap, topic, per_second, partitions
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> SteadyInput:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def stop(self) -> int:
        self.__exit__()
        return self.sent

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=True, linger_ms=5)
        await producer.start()
        try:
            while not self._stop.is_set():
                for _ in range(self.per_second // 10):
                    await producer.send(self.topic, small(self.sent), key=f"k{self.sent}".encode(),
                                        partition=self.sent % self.partitions)
                    self.sent += 1
                await asyncio.sleep(0.1)
            await producer.flush()
        finally:
            await producer.stop()


def test_exactly_once_goes_on_after_the_broker_aborts_a_timed_out_transaction(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = stream_names("txn-timeout")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1}))
    worker = start_worker(names, kafka_bootstrap, tmp_path, NER_DELIVERY="exactly-once",
                          NER_TRANSACTION_TIMEOUT_MS="2000", NER_MAX_BATCH_DOCUMENTS="32")
    assert worker.process is not None
    try:
        # 100 documents every 0.1 s keep the worker in one transaction after another for much of
        # each burst, so that a stop lands inside one within a few tries.
        with SteadyInput(kafka_bootstrap, names["in"], per_second=1000) as steady:
            # Stop the worker while one of its transactions is open, and keep it stopped until the
            # broker has aborted that transaction for its 2 s timeout.
            try:
                caught, aborted = asyncio.run(stop_inside_a_transaction(
                    kafka_bootstrap, names["out"], worker.process.pid, tries=100, abort_timeout_s=40))
            finally:
                os.kill(worker.process.pid, signal.SIGCONT)
            assert caught, "no transaction was caught open"
            assert aborted, "the broker did not abort the timed-out transaction within 40 s"
            # The fault reached the worker: it found its transaction fenced, or gave it up as timed out.
            assert wait_for_log(worker, ("fenced", "transaction aborted"), timeout_s=30), worker.log()
            time.sleep(3)  # the stream goes on after it
            total = steady.stop()
        out = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=total, isolation_level="read_committed",
                                     timeout=90))
        deadline = time.monotonic() + 10
        while asyncio.run(committed_offsets(kafka_bootstrap, names["group"], names["in"], 1))[0] != total:
            assert time.monotonic() < deadline, "the committed offset stopped moving"
            time.sleep(0.5)
        code, _ = worker.terminate()
    finally:
        worker.kill()
    acc = Accounting.of(total, out, [])
    acc.report("transaction timeout exactly-once")
    assert code == 0, worker.log()
    assert acc.lost == [] and acc.duplicated == 0 and acc.order_violations == 0


async def join_and_leave(bootstrap: str, group: str, topic: str, hold_s: float) -> None:
    """A bare consumer joins the worker's group (taking partitions from it), then leaves."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                session_timeout_ms=6000)
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
        consumer.pause(*consumer.assignment())  # it only takes partitions away; it reads and commits nothing
        await asyncio.sleep(hold_s)
    finally:
        await consumer.stop()


def test_exactly_once_survives_revokes_that_do_not_wait_for_the_transactions_in_flight(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    names = stream_names("revoke-txn")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    # NER_DRAIN_TIMEOUT_S=0: a revoke stops the partition's producer whatever it is doing.
    worker = start_worker(names, kafka_bootstrap, tmp_path, NER_DELIVERY="exactly-once", NER_DRAIN_TIMEOUT_S="0")
    try:
        with SteadyInput(kafka_bootstrap, names["in"], per_second=100, partitions=2) as steady:
            for _ in range(4):
                time.sleep(1.5)
                asyncio.run(join_and_leave(kafka_bootstrap, names["group"], names["in"], hold_s=1))
            time.sleep(1)
            total = steady.stop()
        out = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=total, isolation_level="read_committed",
                                     timeout=60))
        code, _ = worker.terminate()
    finally:
        worker.kill()
    outputs = Counter((orjson.loads(r.value or b"")["ner"]["source"]["partition"],
                       orjson.loads(r.value or b"")["ner"]["source"]["offset"]) for r in out)
    duplicated = sum(n - 1 for n in outputs.values())
    print(f"revokes during transactions exactly-once: inputs={total} outputs={len(out)} dead_letters=0 "
          f"lost={total - len(outputs)} duplicated={duplicated}")
    assert code == 0, worker.log()
    assert len(outputs) == total and duplicated == 0


def test_a_transactional_producer_that_cannot_start_stops_the_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = stream_names("txn-start")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1}))
    # Over the broker's transaction.max.timeout.ms (15 min): every InitProducerId is refused.
    worker = WorkerProcess({**stream_env(names, kafka_bootstrap), "NER_DELIVERY": "exactly-once",
                            "NER_TRANSACTION_TIMEOUT_MS": "1000000", "NER_CONNECT_RETRY_TIMEOUT_S": "5"},
                           tmp_path / "worker.log").start()
    assert worker.process is not None
    ready_answers: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while worker.process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                ready_answers.add(worker.get("/readyz")[0])
            time.sleep(0.5)
        code = worker.process.poll()
    finally:
        worker.kill()
    assert code == 1, worker.log()
    assert 200 not in ready_answers
    assert "cannot take up the assigned partitions" in worker.log()
    assert "InvalidTransactionTimeout" in worker.log()
