"""Prometheus metrics of the engine host: is the engine fed, and how well do batches merge?

The host serves no endpoint of its own: started by a multi-process ``run`` it writes these to
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor) and
the supervisor's ``/metrics`` exports them beside the stream processes' series. Started without
that folder (a benchmark, a test) they stay in this process's memory, unread.

* ``ner_engine_host_busy_seconds_total``: time with at least one batch on the engine; its rate
  is the fraction of time the engine (the GPU) is working. Below 1 while
  ``ner_engine_host_inflight_requests`` stays near 0, the stream processes do not feed it:
  add processes (or cores); near 1, the engine is the limit.
* ``ner_engine_host_batch_requests``: requests (one stream batch each) merged into one engine
  batch, ``ner_engine_host_batch_tokens`` its tokens, ``ner_engine_host_batch_seconds`` its
  engine time.
* ``ner_engine_host_requests_total``, ``ner_engine_host_failed_requests_total``: requests
  received, and those answered with an error (a bad request, or the engine failed on it alone).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.metrics import SECONDS_BUCKETS, SIZE_BUCKETS


class HostMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A registry of its own: several hosts may run in one process (tests).
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("ner_engine_host_requests_total",
                                "Requests (one stream batch each) the engine host received.", registry=r)
        self.failed_requests = Counter("ner_engine_host_failed_requests_total",
                                       "Requests the engine host answered with an error.", registry=r)
        self.inflight_requests = Gauge("ner_engine_host_inflight_requests",
                                       "Requests received and not yet answered (waiting or on the engine).",
                                       multiprocess_mode="livesum", registry=r)
        self.batch_requests = Histogram("ner_engine_host_batch_requests", "Requests merged into one engine batch.",
                                        buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("ner_engine_host_batch_tokens", "Tokens per merged engine batch.",
                                      buckets=SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("ner_engine_host_batch_seconds", "Engine time per merged batch.",
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.busy_seconds = Counter("ner_engine_host_busy_seconds_total",
                                    "Time with at least one batch on the engine.", registry=r)
        self._running = 0
        self._counted_until = 0.0

    @contextlib.contextmanager
    def batch_on_engine(self, requests: int, tokens: int) -> Iterator[None]:
        """Around one merged batch's engine call: its size, its time, and the engine's busy time,
        counted up to each batch's end once however many batches overlapped it."""
        self.batch_requests.observe(requests)
        self.batch_tokens.observe(tokens)
        started = time.monotonic()
        if self._running == 0:
            self._counted_until = started
        self._running += 1
        try:
            yield
        finally:
            now = time.monotonic()
            self.batch_seconds.observe(now - started)
            self.busy_seconds.inc(now - self._counted_until)
            self._counted_until = now
            self._running -= 1
