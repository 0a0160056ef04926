"""The serve micro-batcher's logic with a scripted annotator (no model): who shares a batch,
order of answers, limits, failures and overload."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pytest

from worker.annotator import Annotator, BatchResult
from worker.serve.batching import MicroBatcher, Overloaded
from worker.serve.metrics import ServeMetrics
from worker.text.tokenize import EncodedText


@dataclass
class FakeDocument:
    windows: list[list[int]]


class ScriptedAnnotator:
    """Answers each document with one entity naming its first token; records every batch."""

    def __init__(self, seconds: float = 0.05, fail: bool = False) -> None:
        self.seconds = seconds
        self.fail = fail
        self.batches: list[list[int]] = []

    async def annotate_encoded(self, documents: Sequence[Any]) -> BatchResult:
        self.batches.append([doc.windows[0][0] for doc in documents])
        await asyncio.sleep(self.seconds)
        if self.fail:
            raise RuntimeError("engine down")
        entities: list[Any] = [[{"label": "X", "text": str(doc.windows[0][0]), "start": 0, "end": 1, "score": 1.0}]
                               for doc in documents]
        return BatchResult(entities, self.seconds, len(documents), sum(len(d.windows[0]) for d in documents))


def document(number: int, tokens: int = 4) -> EncodedText:
    return cast(EncodedText, FakeDocument([[number] * tokens]))


def batcher(annotator: ScriptedAnnotator, **limits: Any) -> MicroBatcher:
    options: dict[str, Any] = {"max_documents": 8, "max_tokens": 1000, "max_wait_s": 0.02, "max_concurrent": 1,
                               "max_queued": 1000}
    options.update(limits)
    return MicroBatcher(cast(Annotator, annotator), ServeMetrics(), **options)


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, timeout=30))


def test_an_idle_engine_takes_a_request_at_once_and_busy_time_fills_batches() -> None:
    annotator = ScriptedAnnotator(seconds=0.2)

    async def scenario() -> list[Any]:
        micro = batcher(annotator)
        micro.start()
        try:
            first = asyncio.create_task(micro.annotate([document(0)]))
            await asyncio.sleep(0.05)  # the first batch is being scored
            others = [asyncio.create_task(micro.annotate([document(n)])) for n in range(1, 6)]
            return await asyncio.gather(first, *others)
        finally:
            await micro.close()

    answers = run(scenario())
    assert annotator.batches == [[0], [1, 2, 3, 4, 5]]  # five clients, one engine batch
    assert [answer[0][0][0]["text"] for answer in answers] == ["0", "1", "2", "3", "4", "5"]


def test_a_request_gets_its_documents_back_in_order_across_batches() -> None:
    annotator = ScriptedAnnotator(seconds=0.01)

    async def scenario() -> list[Any]:
        micro = batcher(annotator, max_documents=3, max_tokens=10)
        micro.start()
        try:
            return await micro.annotate([document(n, tokens=4) for n in range(7)])
        finally:
            await micro.close()

    answers = run(scenario())
    assert [entities[0]["text"] for entities, _ in answers] == [str(n) for n in range(7)]
    assert all(len(batch) <= 2 for batch in annotator.batches)  # 2 x 4 tokens fit in 10, 3 do not
    assert [n for batch in annotator.batches for n in batch] == list(range(7))


def test_an_engine_failure_reaches_every_waiting_request() -> None:
    annotator = ScriptedAnnotator(fail=True)

    async def scenario() -> list[Any]:
        micro = batcher(annotator)
        micro.start()
        try:
            return await asyncio.gather(micro.annotate([document(1)]), micro.annotate([document(2)]),
                                        return_exceptions=True)
        finally:
            await micro.close()

    outcomes = run(scenario())
    assert [str(outcome) for outcome in outcomes] == ["engine down", "engine down"]


def test_too_many_waiting_documents_is_overload() -> None:
    annotator = ScriptedAnnotator(seconds=0.3)

    async def scenario() -> None:
        micro = batcher(annotator, max_queued=5)
        micro.start()
        try:
            waiting = asyncio.create_task(micro.annotate([document(n) for n in range(4)]))
            await asyncio.sleep(0)
            with pytest.raises(Overloaded, match="limit is 5"):
                await micro.annotate([document(9), document(10)])
            await waiting
        finally:
            await micro.close()

    run(scenario())


def test_a_cancelled_request_does_not_reach_the_engine() -> None:
    annotator = ScriptedAnnotator(seconds=0.2)

    async def scenario() -> None:
        micro = batcher(annotator)
        micro.start()
        try:
            first = asyncio.create_task(micro.annotate([document(0)]))
            await asyncio.sleep(0.05)
            gone = asyncio.create_task(micro.annotate([document(1)]))
            kept = asyncio.create_task(micro.annotate([document(2)]))
            await asyncio.sleep(0.01)
            gone.cancel()  # the client hung up while waiting
            await asyncio.gather(first, kept)
        finally:
            await micro.close()

    run(scenario())
    assert annotator.batches == [[0], [2]]
