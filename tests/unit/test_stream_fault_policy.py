"""Fault policy of the stream that needs no broker: transactional ids, bounded offset commits."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from worker.settings import load_settings
from worker.stream import runner as runner_module
from worker.stream.config import RunnerConfig
from worker.stream.health import StreamStatus
from worker.stream.metrics import WorkerMetrics
from worker.stream.runner import StreamRunner
from worker.stream.transactions import transactional_id


def test_transactional_ids_of_different_partitions_never_collide_when_names_contain_dots() -> None:
    assert transactional_id("p", "a.b", TopicPartition("c", 0)) != transactional_id("p", "a", TopicPartition("b.c", 0))
    assert transactional_id("p.q", "g", TopicPartition("t", 0)) != transactional_id("p", "q.g", TopicPartition("t", 0))


def test_transactional_ids_of_names_without_dots_are_unchanged() -> None:
    # A rolling upgrade keeps fencing the previous version's producers only if the id is the same.
    assert transactional_id("kafka-ner-worker", "my-group", TopicPartition("in_topic", 3)) == \
        "kafka-ner-worker.my-group.in_topic.3"


class _CommitNeverReturns:
    """aiokafka's consumer.commit() retries a retriable error (coordinator unreachable) for ever."""

    def __init__(self) -> None:
        self.calls = 0

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.calls += 1
        await asyncio.Event().wait()

    def assignment(self) -> set[TopicPartition]:
        return set()


def test_an_offset_commit_that_never_answers_is_given_up_after_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "_COMMIT_TIMEOUT_S", 0.2, raising=False)
    metrics = WorkerMetrics()
    consumer = _CommitNeverReturns()
    stream = StreamRunner(RunnerConfig.from_settings(load_settings({})), consumer,  # type: ignore[arg-type]
                          lambda rewind: None, annotator=None, metrics=metrics, status=StreamStatus())  # type: ignore[arg-type, return-value]
    tp = TopicPartition("in", 0)
    stream.tracker.assign([tp])
    stream.tracker.progress(tp).track(0)
    stream.tracker.progress(tp).ack(0)

    async def commit() -> None:
        await asyncio.wait_for(stream.commit(), timeout=5)

    asyncio.run(commit())
    assert consumer.calls == 1
    assert metrics.commit_failures._value.get() == 1
    assert stream.tracker.committable() == {tp: 1}  # not marked committed: the next commit tries again
