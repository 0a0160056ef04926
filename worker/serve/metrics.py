"""Prometheus metrics of ``ner-worker serve``: the shared ones (``worker.metrics``, so engine and
batch series keep the stream worker's names and one dashboard reads both) plus the HTTP ones.

The HTTP metrics are labelled by route template, never by raw path, so a scanner cannot explode
their cardinality.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.metrics import SECONDS_BUCKETS, EngineMetrics


class ServeMetrics(EngineMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
        self.http_requests = Counter(
            "ner_http_requests_total", "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.http_seconds = Histogram(
            "ner_http_request_duration_seconds", "Time to answer an HTTP request, by route.", ["route"],
            buckets=SECONDS_BUCKETS, registry=r,
        )
        self.documents_annotated = Counter(
            "ner_documents_annotated_total", "Documents annotated and returned.", registry=r
        )
        self.documents_rejected = Counter(
            "ner_documents_rejected_total", "Documents that could not be annotated, by reason.", ["reason"], registry=r
        )
        self.queued_documents = Gauge(
            "ner_queued_documents", "Documents waiting for an engine batch.", registry=r
        )
