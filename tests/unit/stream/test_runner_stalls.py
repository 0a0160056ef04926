"""An engine that never answers: its call times out and counts as a failed attempt, and /healthz
reports a publisher that has not advanced for a bound while work is pending."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition

from tests.unit.stream.fakes import INPUT, World, documents, play, until
from worker.stream import runner as runner_module
from worker.stream.health import StreamStatus
from worker.stream.runner import FatalStreamError

P0 = TopicPartition(INPUT, 0)


@pytest.fixture(autouse=True)
def _quick_engine_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "_ENGINE_RETRY_BASE_S", 0.01)
    monkeypatch.setattr(runner_module, "_ENGINE_RETRY_MAX_S", 0.01)


def test_an_engine_call_that_never_answers_times_out_and_the_batch_is_tried_again() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b"))
        w.annotator.hold(0)  # the first call hangs for good; the second answers
        await w.consumer.rebalance([P0])
        await until(lambda: len(w.broker.written) == 2)

    w = play(scenario, engine_timeout_s=0.1)
    assert w.annotator.batches == [["a", "b"], ["a", "b"]]
    assert w.broker.written_offsets() == [0, 1]
    assert w.metrics.registry.get_sample_value("ner_engine_errors_total") == 1


def test_an_engine_that_never_answers_any_attempt_stops_the_worker() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b"))
        w.annotator.hold(0, 1, 2)
        await w.consumer.rebalance([P0])
        await until(lambda: w.runner._fatal is not None or len(w.annotator.batches) >= 3)
        await until(lambda: w.metrics.registry.get_sample_value("ner_engine_errors_total") == 3)

    with pytest.raises(FatalStreamError, match="engine") as stop:
        play(scenario, engine_timeout_s=0.1)
    assert not stop.value.refused  # an engine may come back: a stream process of several is restarted


def test_health_is_false_while_work_is_pending_and_the_publisher_has_not_advanced_for_the_bound() -> None:
    status = StreamStatus(progress_limit_s=30.0)
    assert status.health()["publisher"]  # before the loop starts
    status.last_progress = time.monotonic() - 10
    assert status.health()["publisher"]
    status.last_progress = time.monotonic() - 31
    assert status.health() == {"event_loop": True, "main_loop": True, "publisher": False}


def test_health_goes_false_while_an_engine_call_hangs_and_true_again_once_it_answers() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b"))
        w.annotator.hold(0)
        await w.consumer.rebalance([P0])
        await until(lambda: len(w.annotator.batches) == 1)
        assert w.runner.status.health()["publisher"]
        await until(lambda: not w.runner.status.health()["publisher"])
        assert w.runner.status.health()["main_loop"]  # the loop goes round: only the publisher is stuck
        w.annotator.release(0)
        await until(lambda: w.broker.written_offsets() == [0, 1])
        await until(lambda: w.runner.status.health()["publisher"])

    play(scenario, progress_limit_s=0.2)


def test_health_stays_true_while_there_is_nothing_to_do() -> None:
    async def scenario(w: World) -> None:
        w.broker.fill(P0, documents("a", "b"))
        await w.consumer.rebalance([P0])
        await until(lambda: w.broker.written_offsets() == [0, 1])
        await asyncio.sleep(0.4)  # idle for twice the bound
        assert w.runner.status.health()["publisher"]

    play(scenario, progress_limit_s=0.2)
