"""Micro-batching across HTTP requests: documents of concurrent requests share engine batches.

When the engine is idle a request's documents go at once (waiting would only add latency).
While batches are in flight, arriving documents gather for up to ``max_wait_s`` and then keep
gathering until an engine slot frees, so the busier the server, the fuller the batches; a batch
never exceeds ``max_documents`` or ``max_tokens`` (a longer document goes alone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from worker.annotator import Annotator
from worker.records import Rejection, engine_share
from worker.serve.metrics import ServeMetrics
from worker.text.decode import Entity
from worker.text.tokenize import EncodedText


class Overloaded(RuntimeError):
    """More documents are queued than the server accepts; the client should retry later."""


@dataclass(slots=True)
class _Item:
    encoded: EncodedText
    tokens: int
    future: asyncio.Future[tuple[list[Entity] | Rejection, float]]


class MicroBatcher:
    def __init__(self, annotator: Annotator, metrics: ServeMetrics, *, max_documents: int, max_tokens: int,
                 max_wait_s: float, max_concurrent: int, max_queued: int) -> None:
        self._annotator = annotator
        self._metrics = metrics
        self._max_documents = max_documents
        self._max_tokens = max_tokens
        self._max_wait_s = max_wait_s
        self._max_queued = max_queued
        self._slots = asyncio.Semaphore(max_concurrent)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._carry: _Item | None = None
        self._queued = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="micro-batcher")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._batches):
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)

    async def annotate(self, documents: Sequence[EncodedText]) -> list[tuple[list[Entity] | Rejection, float]]:
        """Entities (or the reason there are none) and the document's share of its batch's engine
        seconds (``engine_share``), per document, in order."""
        if self._queued + len(documents) > self._max_queued:
            raise Overloaded(f"{self._queued} documents are waiting; the limit is {self._max_queued}")
        loop = asyncio.get_running_loop()
        items = [_Item(doc, sum(len(w) for w in doc.windows), loop.create_future()) for doc in documents]
        for item in items:
            self._queue.put_nowait(item)
        self._queued += len(items)
        self._metrics.queued_documents.set(self._queued)
        try:
            return list(await asyncio.gather(*(item.future for item in items)))
        finally:
            for item in items:
                item.future.cancel()  # a no-op once done; otherwise the batch skips nothing but the result

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [self._carry] if self._carry is not None else [await self._queue.get()]
            self._carry = None
            tokens = batch[0].tokens
            engine_busy = len(self._batches) >= 1
            deadline = loop.time() + (self._max_wait_s if engine_busy else 0.0)
            tokens = await self._fill(batch, tokens, deadline)
            if not self._slots.locked():
                await self._slots.acquire()
            else:
                tokens = await self._fill_until_slot(batch, tokens)
            self._queued -= len(batch)
            self._metrics.queued_documents.set(self._queued)
            task = asyncio.create_task(self._score(batch, tokens))
            self._batches.add(task)
            task.add_done_callback(self._finished)

    async def _fill_until_slot(self, batch: list[_Item], tokens: int) -> int:
        """Every engine slot is busy: keep adding arriving items until one frees (or the batch is full)."""
        slot = asyncio.ensure_future(self._slots.acquire())
        while not slot.done() and not self._full(batch, tokens):
            getter = asyncio.ensure_future(self._queue.get())
            await asyncio.wait({slot, getter}, return_when=asyncio.FIRST_COMPLETED)
            getter.cancel()
            try:
                item = await getter  # it may have taken an item just before the cancel: keep it
            except asyncio.CancelledError:
                continue
            tokens = self._add(batch, tokens, item)
        await slot
        return tokens

    def _add(self, batch: list[_Item], tokens: int, item: _Item) -> int:
        if item.future.cancelled():
            self._queued -= 1  # its request is gone (client disconnected)
        elif tokens + item.tokens > self._max_tokens:
            self._carry = item  # starts the next batch
        else:
            batch.append(item)
            tokens += item.tokens
        return tokens

    def _full(self, batch: list[_Item], tokens: int) -> bool:
        return self._carry is not None or len(batch) >= self._max_documents or tokens >= self._max_tokens

    async def _fill(self, batch: list[_Item], tokens: int, deadline: float) -> int:
        """Add queued items (waiting until ``deadline`` for more) within the batch limits."""
        loop = asyncio.get_running_loop()
        while not self._full(batch, tokens):
            try:
                if self._queue.empty() and loop.time() >= deadline:
                    break
                item = self._queue.get_nowait() if not self._queue.empty() else \
                    await asyncio.wait_for(self._queue.get(), deadline - loop.time())
            except (asyncio.QueueEmpty, TimeoutError):
                break
            tokens = self._add(batch, tokens, item)
        return tokens

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    async def _score(self, batch: list[_Item], tokens: int) -> None:
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        self._metrics.batch_documents.observe(len(live))
        self._metrics.batch_tokens.observe(tokens)
        try:
            result = await self._annotator.annotate_encoded([item.encoded for item in live])
        except Exception as exc:  # every waiting request learns of the failure; nothing is lost silently
            self._metrics.engine_errors.inc()
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self._metrics.engine_seconds.observe(result.engine_seconds)
        self._metrics.tokens_processed.inc(result.tokens)
        for item, entities in zip(live, result.entities, strict=True):
            if not item.future.done():
                item.future.set_result((entities, engine_share(result.engine_seconds, item.tokens, result.tokens)))
