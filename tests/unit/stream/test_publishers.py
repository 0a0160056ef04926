"""Both publishers under the stream loop: a refused write, an aborted and a fenced transaction, a
permission denied."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaTimeoutError,
    ProducerFenced,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from tests.unit.stream.fakes import GROUP, INPUT, World, Written, documents, play, until
from worker.stream.refusals import NotAuthorizedError, RefusedDeadLetterError
from worker.stream.runner import FatalStreamError, stopping_for
from worker.stream.transactions import transactional_id

P0 = TopicPartition(INPUT, 0)
P1 = TopicPartition(INPUT, 1)


# --- at-least-once ----------------------------------------------------------------------------


def test_a_refused_write_reads_the_partition_again_from_its_committed_offset() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d", "e", "f"))
        await w.consumer.rebalance([P0])
        await until(lambda: len(w.producer.pending) >= 2)
        w.producer.settle(2)  # offsets 0 and 1 written, then committed
        await until(lambda: w.broker.group_offsets.get(P0) == 2)
        await until(lambda: len(w.producer.pending) == 4)
        refused = {3}

        def refuse(written: Written) -> RequestTimedOutError | None:
            if written.source_offset() in refused:
                refused.clear()  # only the first attempt
                return RequestTimedOutError()
            return None

        w.producer.refuse = refuse
        w.producer.auto_ack = True
        w.producer.settle()  # 2, 4 and 5 written; 3 refused
        await until(lambda: w.broker.group_offsets.get(P0) == 6)

    w = play(scenario, exactly_once=False, auto_ack=False, max_batch_documents=2)
    assert w.rewinds() == 1
    # Read again from the committed offset (2), not from the start.
    assert (P0, 2) in w.consumer.seeks and all(offset >= 2 for _, offset in w.consumer.seeks)
    written = w.broker.written_offsets()
    assert written[:2] == [0, 1] and written.count(0) == 1 and written.count(1) == 1
    assert written[-4:] == [2, 3, 4, 5]  # read again from 2: nothing after the refused record skipped
    assert written.count(3) == 1


def test_a_send_refused_at_once_rewinds_too_and_no_commit_passes_the_record() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c"))
        refusals = [KafkaTimeoutError("the send buffer stayed full")] * 2

        def refuse(written: Written) -> KafkaTimeoutError | None:
            return refusals.pop() if written.source_offset() == 1 and refusals else None

        w.producer.refuse_send = refuse
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.group_offsets.get(P0) == 3)

    w = play(scenario, exactly_once=False, max_batch_documents=3)
    assert w.rewinds() == 2
    assert all(offsets[P0] in (1, 3) for offsets in w.consumer.commits)  # never past offset 1 before it is written
    assert w.broker.written_offsets().count(1) == 1
    assert sorted(set(w.broker.written_offsets())) == [0, 1, 2]


# --- exactly-once -----------------------------------------------------------------------------


def test_each_batch_is_one_transaction_per_partition_with_its_offsets() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c"))
        w.broker.fill(P1, documents("x", "y", "z"))
        await w.consumer.rebalance([P0, P1])
        await until(lambda: w.broker.group_offsets == {P0: 3, P1: 3})

    w = play(scenario, exactly_once=True, max_batch_documents=4)
    assert [p.transactional_id for p in w.txn_producers] == [transactional_id("ner", GROUP, P0),
                                                             transactional_id("ner", GROUP, P1)]
    # Batches [a b c x] and [y z]: P0 in one transaction, P1 in two.
    assert [p.transactions for p in w.txn_producers] == [["committed"], ["committed", "committed"]]
    assert w.consumer.commits == []  # offsets go only through the transactions
    assert sorted(w.broker.written_offsets()) == [0, 0, 1, 1, 2, 2]


def test_an_aborted_transaction_is_invisible_and_its_records_are_processed_again() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d", "e", "f"))
        w.annotator.hold(1)
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.group_offsets.get(P0) == 2)
        w.txn_producers[0].commit_error = KafkaTimeoutError("the coordinator did not answer")
        w.annotator.release(1)
        await until(lambda: w.broker.group_offsets.get(P0) == 6)

    w = play(scenario, exactly_once=True, max_batch_documents=2)
    assert w.txn_producers[0].transactions == ["committed", "commit failed"]
    assert w.txn_producers[0].stopped and len(w.txn_producers) == 2  # replaced by a fresh producer
    assert w.rewinds() == 1
    assert w.broker.written_offsets() == [0, 1, 2, 3, 4, 5]  # what read_committed readers see: each once


def test_a_fenced_producer_whose_partition_is_still_assigned_takes_it_up_again() -> None:
    # A transaction that outlives its timeout gets this worker's own producer fenced; the
    # partition is still assigned here, so it is taken up again with a new producer and read from
    # its committed offset, not forgotten (which would stall it for good).
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        w.annotator.hold(1)
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.group_offsets.get(P0) == 2)
        w.txn_producers[0].commit_error = ProducerFenced()
        w.annotator.release(1)
        await until(lambda: w.broker.group_offsets.get(P0) == 4)

    w = play(scenario, exactly_once=True, max_batch_documents=2)
    assert len(w.txn_producers) == 2 and w.txn_producers[0].stopped  # replaced, same transactional id
    assert w.txn_producers[1].transactional_id == w.txn_producers[0].transactional_id
    assert w.rewinds() == 1
    assert w.broker.written_offsets() == [0, 1, 2, 3]  # each once: the fenced transaction left nothing
    assert w.broker.group_offsets == {P0: 4}


# --- a permission denied ----------------------------------------------------------------------


def test_a_write_denied_by_an_acl_stops_the_worker_at_once_naming_it_and_commits_nothing_past_it() -> None:
    worlds: list[World] = []

    async def scenario(w: World) -> None:
        worlds.append(w)
        w.broker.fill(P0, documents("a", "b", "c"))
        w.producer.refuse = lambda written: TopicAuthorizationFailedError(written.topic)
        await w.consumer.rebalance([P0])
        await until(lambda: w.runner._fatal is not None)

    denial = r"TOPIC_AUTHORIZATION_FAILED \(29\) for ner\.output; .* needs WRITE"
    with pytest.raises(FatalStreamError, match=denial) as stop:
        play(scenario)
    assert stop.value.refused  # no restart gets past it
    w = worlds[0]
    assert w.rewinds() == 0 and w.consumer.seeks == []  # not retried: no rewind meets the same denial again
    assert w.broker.written == [] and w.broker.group_offsets == {}


def test_an_offset_commit_denied_by_an_acl_stops_the_worker_naming_it() -> None:
    # Retried on every commit interval it would fail for good while the outputs go on: every
    # record published and none committed, all of them to be processed again after a restart.
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b"))
        w.consumer.commit_error = GroupAuthorizationFailedError(GROUP)
        await w.consumer.rebalance([P0])
        await until(lambda: w.runner._fatal is not None)

    denial = r"GROUP_AUTHORIZATION_FAILED \(30\) for group; .* READ on the consumer"
    with pytest.raises(FatalStreamError, match=denial) as stop:
        play(scenario)
    assert stop.value.refused


def test_a_stop_says_whether_the_broker_refused_for_good() -> None:
    """A permission denied or a dead letter its topic will not take is met again after any
    restart; other faults (an engine, a coordinator that does not answer) may pass."""
    assert stopping_for(RefusedDeadLetterError("ner.dead-0 offset 3: MESSAGE_TOO_LARGE")).refused
    assert stopping_for(NotAuthorizedError("TOPIC_AUTHORIZATION_FAILED")).refused
    assert not stopping_for(TimeoutError("the group coordinator did not answer")).refused
    assert stopping_for(FatalStreamError("consuming: denied", refused=True)).refused
    assert not stopping_for(FatalStreamError("rewound 5 times to offset 3")).refused
    assert "MESSAGE_TOO_LARGE" in str(stopping_for(RefusedDeadLetterError("MESSAGE_TOO_LARGE")))
