"""The worker's own path, without Kafka: record bytes → parse → tokenize → engine → decode → JSON.

The same modules the stream uses (``records``, ``Annotator``), in one process and one event loop,
with several batches in flight as ``max_concurrent_batches`` allows in the worker. Two drivers:

* ``throughput``: every record is there at the start (a consumer catching up on lag);
* ``latency``: records arrive at a fixed rate (Poisson), batches form by size or by
  ``max_wait``; each record's latency runs from its arrival to its output JSON.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.annotator import Annotator
from worker.output import OutputControls
from worker.records import Document, ParseOptions, output_value, parse_value
from worker.settings import Settings
from worker.text.tokenize import EncodedText

LATENCY_MAX_WAIT_S = 0.01
"""How long the latency drivers let a batch's first record wait for more before it leaves."""


@dataclass
class StageClock:
    """CPU seconds the event loop spends in each stage (the engine's wait is not CPU here)."""

    parse: float = 0.0
    tokenize: float = 0.0
    decode: float = 0.0
    serialize: float = 0.0
    docs: int = 0
    tokens: int = 0
    windows: int = 0
    latencies: list[float] = field(default_factory=list)

    def per_doc_us(self) -> dict[str, float]:
        n = max(1, self.docs)
        return {name: round(getattr(self, name) / n * 1e6, 2) for name in ("parse", "tokenize", "decode", "serialize")}


async def run_batch(annotator: Annotator, settings: Settings, values: Sequence[bytes],
                    clock: StageClock) -> list[bytes]:
    """One batch through the worker path; returns the output values."""
    t0 = time.perf_counter()
    options = ParseOptions.from_settings(settings)
    documents = [d for d in (parse_value(v, options) for v in values) if isinstance(d, Document)]
    t1 = time.perf_counter()
    encoded = annotator.tokenize([d.text for d in documents])
    t2 = time.perf_counter()
    pairs = [(d, e) for d, e in zip(documents, encoded, strict=True) if isinstance(e, EncodedText)]
    batch = await annotator.annotate_encoded([e for _, e in pairs])
    t3 = time.perf_counter()
    outputs: list[bytes] = []
    controls = OutputControls.from_settings(settings)
    for (document, _), entities in zip(pairs, batch.entities, strict=True):
        if isinstance(entities, list):
            ner = {"model": annotator.model_name, "engine_ms": round(batch.engine_seconds * 1e3, 2)}
            outputs.append(output_value(document, list(entities), ner=ner, controls=controls))
    t4 = time.perf_counter()
    clock.parse += t1 - t0
    clock.tokenize += t2 - t1
    # annotate_encoded awaited the engine, then decoded on this thread: decode = the rest.
    clock.decode += max(0.0, (t3 - t2) - batch.engine_seconds)
    clock.serialize += t4 - t3
    clock.docs += len(values)
    clock.tokens += batch.tokens
    clock.windows += batch.windows
    return outputs


async def throughput(annotator: Annotator, settings: Settings, values: Sequence[bytes], *,
                     batch_docs: int, concurrency: int) -> dict[str, Any]:
    clock = StageClock()
    slots = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[list[bytes]]] = []

    async def one(chunk: Sequence[bytes]) -> list[bytes]:
        try:
            return await run_batch(annotator, settings, chunk, clock)
        finally:
            slots.release()

    started = time.perf_counter()
    for start in range(0, len(values), batch_docs):
        await slots.acquire()
        tasks.append(asyncio.create_task(one(values[start : start + batch_docs])))
    outputs = sum(len(r) for r in await asyncio.gather(*tasks))
    seconds = time.perf_counter() - started
    if outputs != len(values):
        raise RuntimeError(f"{outputs} outputs for {len(values)} records")
    return {"seconds": seconds, "docs": clock.docs, "tokens": clock.tokens, "windows": clock.windows,
            "docs_per_s": clock.docs / seconds, "tok_per_s": clock.tokens / seconds,
            "cpu_us_per_doc": clock.per_doc_us()}


async def latency(annotator: Annotator, settings: Settings, values: Sequence[bytes], *, rate: float,
                  seconds: float, batch_docs: int, max_wait_s: float, concurrency: int) -> dict[str, Any]:
    """Per-record latency with records arriving at ``rate`` per second for ``seconds``."""
    started = time.perf_counter()
    samples = await latency_samples(annotator, settings, values, rate=rate, seconds=seconds, batch_docs=batch_docs,
                                    max_wait_s=max_wait_s, concurrency=concurrency)
    return {"rate_docs_per_s": rate, "docs": len(samples), "seconds": time.perf_counter() - started,
            **latency_summary(samples), "batch_docs": batch_docs, "max_wait_ms": max_wait_s * 1e3,
            "concurrency": concurrency}


def latency_summary(samples: np.ndarray) -> dict[str, float]:
    """p50, p99 and the largest of latencies in seconds, in milliseconds."""
    return {"p50_ms": float(np.percentile(samples, 50) * 1e3), "p99_ms": float(np.percentile(samples, 99) * 1e3),
            "max_ms": float(samples.max() * 1e3)}


async def latency_samples(annotator: Annotator, settings: Settings, values: Sequence[bytes], *, rate: float,
                          seconds: float, batch_docs: int, max_wait_s: float, concurrency: int) -> np.ndarray:
    """Each record's latency in seconds, records arriving at ``rate`` per second (Poisson) for
    ``seconds``; a batch leaves when it is full or its first record has waited ``max_wait_s``."""
    loop = asyncio.get_running_loop()
    count = min(len(values), max(1, int(rate * seconds)))
    rng = random.Random(7)
    gaps = [rng.expovariate(rate) for _ in range(count)]
    origin = loop.time() + 0.05
    arrivals = list(np.cumsum(gaps) + origin)
    clock = StageClock()
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(first: int, last: int) -> None:
        try:
            await run_batch(annotator, settings, values[first:last], clock)
            done = loop.time()
            latencies.extend(done - arrivals[i] for i in range(first, last))
        finally:
            slots.release()

    position = 0
    while position < count:
        now = loop.time()
        arrived = position
        while arrived < count and arrivals[arrived] <= now and arrived - position < batch_docs:
            arrived += 1
        full = arrived - position >= batch_docs
        waited_enough = arrived > position and now - arrivals[position] >= max_wait_s
        if full or waited_enough or (arrived == count and arrived > position):
            await slots.acquire()
            tasks.append(asyncio.create_task(one(position, arrived)))
            position = arrived
            continue
        wake = arrivals[position] + max_wait_s if arrived > position else arrivals[position]
        await asyncio.sleep(max(0.0, min(wake, arrivals[min(arrived, count - 1)]) - now))
    await asyncio.gather(*tasks)
    return np.sort(np.array(latencies))
