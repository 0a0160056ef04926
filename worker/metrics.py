"""The Prometheus metrics every command that scores documents shares, written once.

``run`` (``worker.stream.metrics``) and ``serve`` (``worker.serve.metrics``) extend ``EngineMetrics``
with their own, so the engine and batch series keep one name, help text and bucket layout and one
dashboard reads both. Every registry also carries the process metrics (``process_*``: CPU,
memory, open files) and the Python ones (``python_*``) that prometheus_client's default
registry would have.

Names follow Prometheus conventions (base units, ``_total``); labels stay low-cardinality: a
reason, an entity label, a topic and partition, a route; never a document id.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def process_metrics(registry: CollectorRegistry) -> Info:
    """What every serving process's registry carries besides its own series: the process,
    platform and garbage-collector metrics, and the worker's ``Info`` (returned, to be set).

    Several stream processes export through one supervisor (prometheus_client's multiprocess
    mode), which keeps none of these per process: the supervisor registers them for itself.
    """
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return Info("ner_worker", "Worker version, engine and model.", registry=registry)


class EngineMetrics:
    """Info, engine and batch metrics of one process, in their own registry (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.info = process_metrics(r)
        self.entities = Counter("ner_entities_total", "Entities delivered, by label.", ["label"], registry=r)
        self.tokens_processed = Counter(
            "ner_tokens_processed_total", "Tokens scored by the engine (special tokens included).", registry=r
        )
        self.batch_documents = Histogram(
            "ner_batch_documents", "Documents per engine batch.", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram("ner_batch_tokens", "Tokens per engine batch.", buckets=SIZE_BUCKETS, registry=r)
        self.engine_seconds = Histogram(
            "ner_engine_seconds", "Engine time per batch.", buckets=SECONDS_BUCKETS, registry=r
        )
        self.engine_errors = Counter("ner_engine_errors_total", "Engine batches that failed.", registry=r)
