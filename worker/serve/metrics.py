"""Prometheus metrics of ``ner-worker serve``.

Engine and batch metrics keep the stream worker's names (``ner_batch_documents``,
``ner_engine_seconds``, ``ner_entities_total`` …) so one dashboard reads both; the HTTP ones are
labelled by route template, never by raw path, so a scanner cannot explode their cardinality.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.info = Info("ner_worker", "Worker version, engine and model.", registry=r)
        # CPU, resident memory and open files of this process (process_*), for the dashboard.
        ProcessCollector(registry=r)
        self.http_requests = Counter(
            "ner_http_requests_total", "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.http_seconds = Histogram(
            "ner_http_request_duration_seconds", "Time to answer an HTTP request, by route.", ["route"],
            buckets=_SECONDS_BUCKETS, registry=r,
        )
        self.documents_annotated = Counter(
            "ner_documents_annotated_total", "Documents annotated and returned.", registry=r
        )
        self.documents_rejected = Counter(
            "ner_documents_rejected_total", "Documents that could not be annotated, by reason.", ["reason"], registry=r
        )
        self.entities = Counter("ner_entities_total", "Entities returned, by label.", ["label"], registry=r)
        self.tokens_processed = Counter(
            "ner_tokens_processed_total", "Tokens scored by the engine (special tokens included).", registry=r
        )
        self.batch_documents = Histogram(
            "ner_batch_documents", "Documents per engine batch.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram("ner_batch_tokens", "Tokens per engine batch.", buckets=_SIZE_BUCKETS, registry=r)
        self.engine_seconds = Histogram(
            "ner_engine_seconds", "Engine time per batch.", buckets=_SECONDS_BUCKETS, registry=r
        )
        self.engine_errors = Counter("ner_engine_errors_total", "Engine batches that failed.", registry=r)
        self.queued_documents = Gauge(
            "ner_queued_documents", "Documents waiting for an engine batch.", registry=r
        )
