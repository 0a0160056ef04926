"""StreamRunner with the at-least-once Publisher, a consumer and producer in memory and a fake engine."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import TopicPartition

from tests.unit.stream.fakes import INPUT, SETTINGS, World, documents, play, until

P0 = TopicPartition(INPUT, 0)
P1 = TopicPartition(INPUT, 1)


def test_outputs_keep_input_order_while_later_batches_finish_first() -> None:
    async def scenario(w: World) -> None:
        values = documents("zero", "one", "two", "three", "four")
        w.broker.fill(P0, [*values[:2], b"not json", *values[2:]])  # offset 2 becomes a dead letter
        w.annotator.hold(0)
        await w.consumer.rebalance([P0])
        await until(lambda: len(w.annotator.batches) == 3)  # three batches in flight at once
        await asyncio.sleep(0.05)  # batches 1 and 2 are done by now; the first is not
        assert w.broker.written == []
        w.annotator.release(0)
        await until(lambda: len(w.broker.written) == 6)

    w = play(scenario, max_batch_documents=2)
    assert w.broker.written_offsets() == [0, 1, 2, 3, 4, 5]
    assert w.broker.written_offsets(SETTINGS.dead_letter_topic) == [2]
    # The dead letter travels in the second batch, without reaching the engine.
    assert w.annotator.batches == [["zero", "one"], ["two"], ["three", "four"]]
    assert w.broker.group_offsets == {P0: 6}


def test_a_full_in_flight_budget_pauses_the_partitions_until_there_is_room() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents(*(f"doc {i}" for i in range(10))))
        w.annotator.hold(0)
        await w.consumer.rebalance([P0])
        await until(lambda: w.consumer.paused() == {P0})
        read_while_full = w.consumer.position_of(P0)
        await asyncio.sleep(0.05)
        assert w.consumer.position_of(P0) == read_while_full  # nothing more is read while paused
        assert w.metrics.registry.get_sample_value("ner_paused_partitions") == 1
        w.annotator.release(0)
        await until(lambda: len(w.broker.written) == 10)
        await until(lambda: w.consumer.paused() == set())

    w = play(scenario, max_batch_documents=2, max_inflight_records=4)
    assert w.broker.written_offsets() == list(range(10))


def test_only_the_acknowledged_prefix_of_a_partition_is_committed() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        await w.consumer.rebalance([P0])
        await until(lambda: len(w.producer.pending) == 4)
        w.producer.settle(only=lambda written: written.source_offset() != 0)  # 1-3 acknowledged, 0 not yet
        await asyncio.sleep(0.05)  # many loop rounds, each one may commit
        assert w.consumer.commits == []
        w.producer.settle()
        await until(lambda: w.broker.group_offsets.get(P0) == 4)

    w = play(scenario, auto_ack=False, max_batch_documents=4)
    assert w.consumer.commits == [{P0: 4}]


def test_a_revoked_partition_is_committed_up_to_its_unfinished_work_and_the_rest_not_published() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        w.broker.fill(P1, documents("x", "y"))
        w.annotator.hold(1)  # the batch holding P0's offsets 2 and 3 does not finish
        await w.consumer.rebalance([P0, P1])
        await until(lambda: w.broker.written_offsets() == [0, 1] and len(w.annotator.batches) >= 2)
        await w.consumer.rebalance([P1])  # P0 goes to another worker while offsets 2-3 are in flight
        assert w.broker.group_offsets[P0] == 2
        w.annotator.release(1)
        await until(lambda: len(w.annotator.batches) >= 3)  # P1 is read again and annotated
        await until(lambda: w.broker.group_offsets.get(P1) == 2)
        assert [wr.source_offset() for wr in w.broker.written if _from(wr, P0)] == [0, 1]
        await w.consumer.rebalance([P0, P1])  # back: P0 is read again from its committed offset
        await until(lambda: w.broker.group_offsets.get(P0) == 4)

    w = play(scenario, max_batch_documents=2)
    assert [wr.source_offset() for wr in w.broker.written if _from(wr, P0)] == [0, 1, 2, 3]


def test_a_revoke_waits_for_in_flight_work_that_finishes_within_the_drain_deadline() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        w.annotator.hold(1)
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.written_offsets() == [0, 1] and len(w.annotator.batches) == 2)
        asyncio.get_running_loop().call_later(0.05, w.annotator.release, 1)  # well within the drain deadline
        await w.consumer.rebalance([])
        assert w.broker.written_offsets() == [0, 1, 2, 3]
        assert w.broker.group_offsets == {P0: 4}  # committed before the partition is given up

    play(scenario, max_batch_documents=2, drain_timeout_s=3.0)


def _from(written: Any, tp: TopicPartition) -> bool:
    return bool(orjson.loads(written.value)["ner"]["source"]["partition"] == tp.partition)
