"""The engine host's merging of requests into engine batches, and the facts a client checks."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from worker.engine.host.facts import EngineFacts
from worker.engine.host.merge import Merger, Request


def request(tokens: int, arrived: float) -> Request:
    return Request(np.array([tokens], dtype=np.int32), np.arange(tokens, dtype=np.int32),
                   lambda kind, payload: None, arrived)


def test_requests_that_arrive_within_the_wait_leave_together_oldest_first() -> None:
    async def run() -> list[list[int]]:
        merger = Merger(max_tokens=100, max_wait_s=0.2)
        loop = asyncio.get_running_loop()
        taking = asyncio.create_task(merger.next_batch())
        merger.put(request(10, loop.time()))
        await asyncio.sleep(0.02)
        merger.put(request(20, loop.time()))
        first = await taking
        merger.put(request(30, loop.time()))
        return [[r.tokens for r in first], [r.tokens for r in await merger.next_batch()]]

    assert asyncio.run(run()) == [[10, 20], [30]]


def test_a_full_budget_leaves_at_once_and_the_rest_waits_for_the_next_batch() -> None:
    async def run() -> tuple[list[int], list[int], float]:
        merger = Merger(max_tokens=50, max_wait_s=10.0)
        loop = asyncio.get_running_loop()
        for tokens in (20, 20, 20, 70):
            merger.put(request(tokens, loop.time()))
        started = loop.time()
        first = [r.tokens for r in await merger.next_batch()]
        second = [r.tokens for r in await merger.next_batch()]
        return first, second, loop.time() - started

    first, second, seconds = asyncio.run(run())
    assert first == [20, 20] and second == [20]  # 20 + 70 is over the budget
    assert seconds < 1.0  # the budget was full: no waiting for the deadline


def test_a_request_over_the_budget_leaves_alone_and_one_that_waited_for_a_slot_leaves_at_once() -> None:
    async def run() -> tuple[list[int], float]:
        merger = Merger(max_tokens=50, max_wait_s=0.5)
        loop = asyncio.get_running_loop()
        merger.put(request(400, loop.time() - 1.0))  # it waited a second for a free engine slot
        merger.put(request(5, loop.time()))
        started = loop.time()
        batch = await merger.next_batch()
        return [r.tokens for r in batch], loop.time() - started

    tokens, seconds = asyncio.run(run())
    assert tokens == [400]
    assert seconds < 0.25


def test_draining_hands_back_every_waiting_request() -> None:
    async def run() -> tuple[int, int]:
        merger = Merger(max_tokens=50, max_wait_s=0.0)
        for tokens in (1, 2, 3):
            merger.put(request(tokens, 0.0))
        return len(merger.drain()), len(merger)

    assert asyncio.run(run()) == (3, 0)


def test_a_request_gives_back_its_windows() -> None:
    lengths = np.array([3, 1, 2], dtype=np.int32)
    ids = np.array([101, 5, 102, 7, 101, 102], dtype=np.int32)
    assert Request(lengths, ids, lambda kind, payload: None, 0.0).windows() == [[101, 5, 102], [7], [101, 102]]


def test_bad_merge_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        Merger(max_tokens=0, max_wait_s=0.0)
    with pytest.raises(ValueError):
        Merger(max_tokens=10, max_wait_s=-1.0)


def test_facts_survive_the_ready_frame() -> None:
    facts = EngineFacts("tiny-ner", {0: "O", 1: "B-PER"}, 128, "probabilities")
    assert EngineFacts.from_json(json.loads(facts.encode(pid=1))) == facts
    with pytest.raises(ValueError):
        EngineFacts.from_json({**facts.to_json(), "scores": "votes"})
