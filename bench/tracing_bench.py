"""What the stream's tracing hooks cost per batch, off and on, next to the batch itself.

The hooks are the exact calls ``StreamRunner`` makes for one poll and one batch (poll, tokenize,
batch, engine, publish with one ``record_headers`` per record, end, commit), run in three ways
side by side in one process:

* ``none``: the same loop with no hook at all (the code before tracing);
* ``off``: ``Tracing()`` — what runs when OTEL_EXPORTER_OTLP_ENDPOINT is not set;
* ``on``: ``OtelTracing`` with the SDK's BatchSpanProcessor and an exporter that drops the spans
  (the cost inside the worker; sending them is the exporter thread's work).

For scale, the shipped model's engine and decoding time for one batch of the same size is
measured too. Best of ``--repeat`` runs; prints JSON.

    .venv/bin/python bench/tracing_bench.py --batch 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.tracing import OtelTracing, Tracing, now_ns


def one_batch(tracing: Tracing | None, headers: list[tuple[tuple[str, bytes], ...]]) -> None:
    """The runner's hook calls for one poll and one batch of ``headers`` records."""
    if tracing is None:
        for _ in headers:
            pass
        return
    started = now_ns() if tracing.enabled else 0
    if tracing.enabled:
        tracing.poll(started, headers)
    with tracing.tokenize():
        pass
    trace = tracing.batch(iter(headers))
    if tracing.enabled:
        trace.engine(started, 0.0, now_ns())
    with trace.publish():
        if tracing.enabled:
            for h in headers:
                trace.record_headers(h)
    trace.end()
    with tracing.commit(1):
        pass


def best_ns(run: Callable[[], None], repeat: int, inner: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(inner):
            run()
        best = min(best, (time.perf_counter_ns() - start) / inner)
    return best


def dropping_tracing() -> OtelTracing:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return OtelTracing(provider.get_tracer("bench"), provider)


def engine_ms(batch: int, repeat: int) -> float:
    from worker.annotator import Annotator
    from worker.settings import Settings
    from worker.text.tokenize import EncodedText

    annotator = Annotator.from_settings(Settings())
    texts = [f"Ada Lovelace met Charles Babbage in London on day {n}." for n in range(batch)]
    documents = [d for d in annotator.tokenizer.encode(texts) if isinstance(d, EncodedText)]

    async def run() -> float:
        await annotator.engine.start()
        try:
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                await annotator.annotate_encoded(documents)
                best = min(best, time.perf_counter() - start)
            return best * 1000
        finally:
            await annotator.engine.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="records per batch (the stream's default)")
    parser.add_argument("--traced", type=float, default=1.0, help="share of records with a traceparent")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--inner", type=int, default=200)
    args = parser.parse_args()
    parent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [
        (("source", b"bench"), ("traceparent", parent)) if n < args.batch * args.traced else (("source", b"bench"),)
        for n in range(args.batch)
    ]
    on = dropping_tracing()
    off = Tracing()
    # Interleaved, so that machine noise hits all three alike.
    results: dict[str, float] = {"none": float("inf"), "off": float("inf"), "on": float("inf")}
    for _ in range(3):
        results["none"] = min(results["none"], best_ns(lambda: one_batch(None, headers), args.repeat, args.inner))
        results["off"] = min(results["off"], best_ns(lambda: one_batch(off, headers), args.repeat, args.inner))
        on_ns = best_ns(lambda: one_batch(on, headers), args.repeat, max(1, args.inner // 20))
        results["on"] = min(results["on"], on_ns)
    on.shutdown()
    engine = engine_ms(args.batch, 3)
    print(json.dumps({
        "batch_records": args.batch,
        "traced_share": args.traced,
        "hooks_per_batch_us": {k: round(v / 1000, 2) for k, v in results.items()},
        "off_minus_none_us": round((results["off"] - results["none"]) / 1000, 2),
        "engine_and_decode_per_batch_ms": round(engine, 1),
        "off_share_of_batch": f"{(results['off'] - results['none']) / (engine * 1e6):.6%}",
        "on_share_of_batch": f"{(results['on'] - results['none']) / (engine * 1e6):.3%}",
    }, indent=2))


if __name__ == "__main__":
    main()
