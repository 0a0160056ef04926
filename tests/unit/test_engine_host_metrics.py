"""The engine host's busy time: the union of its batches' engine time, never counted twice."""

from __future__ import annotations

import time

from worker.engine.host.metrics import HostMetrics


def value(metrics: HostMetrics, name: str) -> float:
    found = metrics.registry.get_sample_value(name)
    assert found is not None, name
    return found


def test_overlapping_batches_count_their_busy_time_once() -> None:
    metrics = HostMetrics()
    first, second = metrics.batch_on_engine(2, 100), metrics.batch_on_engine(1, 30)
    started = time.monotonic()
    first.__enter__()
    time.sleep(0.05)
    second.__enter__()  # both on the engine: 0.05 s of busy time, not 0.1
    time.sleep(0.05)
    first.__exit__(None, None, None)
    time.sleep(0.05)
    second.__exit__(None, None, None)
    elapsed = time.monotonic() - started
    time.sleep(0.05)  # idle: not busy
    third_started = time.monotonic()
    with metrics.batch_on_engine(1, 10):
        time.sleep(0.02)
    elapsed += time.monotonic() - third_started
    busy = value(metrics, "ner_engine_host_busy_seconds_total")
    assert elapsed - 0.01 <= busy <= elapsed  # twice the overlap (0.05 s) would break the bound
    # Each batch's own engine time adds up, the overlap included.
    assert value(metrics, "ner_engine_host_batch_seconds_sum") >= busy + 0.05
    assert value(metrics, "ner_engine_host_batch_requests_sum") == 4
    assert value(metrics, "ner_engine_host_batch_tokens_sum") == 140
    assert value(metrics, "ner_engine_host_batch_requests_count") == 3
