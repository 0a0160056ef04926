"""Taking up a partition: where the new owner starts, and a rewind that a rebalance overtakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import RequestTimedOutError

from tests.unit.stream.fakes import GROUP, INPUT, World, Written, documents, play, until
from worker.stream import runner as runner_module
from worker.stream.transactions import transactional_id

P0 = TopicPartition(INPUT, 0)


def test_exactly_once_a_new_owner_starts_after_the_transaction_its_fencing_settles() -> None:
    # The previous owner's last transaction (offsets up to 3) is still committing when the
    # partition comes here: aiokafka's own read of the committed offset (before the assignment
    # hook, without require_stable) still says 1. Starting the partition's producer fences the
    # old one and settles that transaction; only an offset read after it is where to start.
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        w.broker.group_offsets[P0] = 1
        w.broker.committing[transactional_id("ner", GROUP, P0)] = {P0: 3}
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.group_offsets.get(P0) == 4)

    w = play(scenario, exactly_once=True)
    assert w.broker.written_offsets() == [3]  # 1 and 2 were the previous owner's: not again
    assert w.consumer.seeks[-1] == (P0, 3)  # the position set after fencing is the one read from


def test_at_least_once_takes_the_position_aiokafka_read_without_asking_again() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c"))
        w.broker.group_offsets[P0] = 1
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.group_offsets.get(P0) == 3)

    w = play(scenario)
    assert w.broker.written_offsets() == [1, 2]
    assert w.consumer.committed_reads == 0 and w.consumer.seeks == []


def _refuse_offset_twice(w: World, offset: int) -> None:
    # A retriable refusal: each one rewinds the partition to its committed offset.
    left = [RequestTimedOutError(), RequestTimedOutError()]

    def refuse(written: Written) -> RequestTimedOutError | None:
        return left.pop() if written.source_offset() == offset and left else None

    w.producer.refuse = refuse


@pytest.mark.parametrize("reassigned", [True, False], ids=["reassigned", "moved-away"])
def test_a_rebalance_during_a_rewind_back_off_leaves_the_new_assignment_alone(reassigned: bool) -> None:
    # The second rewind to one offset waits before it seeks; a rebalance in that wait has set
    # the partition's position (or taken it away) and records of the new tenure are being read.
    # The rewind must not seek them back (tracked out of order) nor fail on a partition gone.
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        w.broker.group_offsets[P0] = 1
        _refuse_offset_twice(w, 2)
        await w.consumer.rebalance([P0])
        await until(lambda: w.runner._rewound.get(P0) == (1, 2))  # the second rewind is waiting
        w.producer.auto_ack = False  # the new tenure's records stay in flight past the wait
        await w.consumer.rebalance([P0] if reassigned else [])
        await asyncio.sleep(runner_module._REWIND_BACKOFF_S * 2)  # past the rewind's wait
        w.producer.auto_ack = True
        w.producer.settle()
        if reassigned:
            await until(lambda: w.broker.group_offsets.get(P0) == 4)

    w = play(scenario)
    assert w.runner._fatal is None
    if reassigned:
        assert w.broker.written_offsets()[-3:] == [1, 2, 3]
        assert w.broker.group_offsets == {P0: 4}
    else:
        assert w.broker.group_offsets == {P0: 1}  # nothing committed past the refused record
    assert w.broker.written_offsets().count(2) == (1 if reassigned else 0)  # refused twice, then written once


def test_a_rebalance_while_a_rewind_reads_the_committed_offset_leaves_the_new_assignment_alone() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c", "d"))
        w.broker.group_offsets[P0] = 1
        _refuse_offset_twice(w, 2)
        gate = asyncio.Event()
        w.consumer.committed_gate = gate  # the first rewind's OffsetFetch is slow
        await w.consumer.rebalance([P0])
        await until(lambda: w.consumer.committed_reads == 1)
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.group_offsets.get(P0) == 4)
        gate.set()
        await asyncio.sleep(0.05)

    w = play(scenario)
    assert w.runner._fatal is None
    assert w.broker.group_offsets == {P0: 4}
    assert w.broker.written_offsets()[-3:] == [1, 2, 3]


class _SlowRegistry:
    """A schema resolver whose first lookup waits for ``answer`` (a registry that is slow once)."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.lookups = 0

    async def resolve(self, values: Iterable[bytes], stopping: asyncio.Event, *,
                      on_wait: Callable[[], None]) -> bool:
        self.lookups += 1
        if self.lookups == 1:
            await self.answer.wait()
        return True


def test_records_whose_schemas_were_looked_up_across_a_rebalance_are_left_to_the_new_tenure() -> None:
    # Fetched before the rebalance, parsed after it: the new tenure has its own position (here
    # the same records), so taking them too would process them twice.
    registry = _SlowRegistry()

    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b", "c"))
        await w.consumer.rebalance([P0])
        await until(lambda: registry.lookups == 1)
        await w.consumer.rebalance([P0])
        registry.answer.set()
        await until(lambda: w.broker.group_offsets.get(P0) == 3)

    w = play(scenario, resolver=registry)
    assert w.broker.written_offsets() == [0, 1, 2]
