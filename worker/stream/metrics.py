"""Prometheus metrics of the worker: one registry, conventional names (base units, ``_total``).

Labels stay low-cardinality: a reason, an entity label, a topic and partition; never a document id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    """All metrics of one worker process, registered in their own registry (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.info = Info("ner_worker", "Worker version, engine and model.", registry=r)
        # CPU, resident memory and open files of this process (process_*), for the dashboard.
        ProcessCollector(registry=r)
        self.records_received = Counter(
            "ner_records_received_total", "Records read from the input topic.", registry=r
        )
        self.records_published = Counter(
            "ner_records_published_total", "Annotated records acknowledged by the broker.", registry=r
        )
        self.records_dead_lettered = Counter(
            "ner_records_dead_lettered_total",
            "Records sent to the dead-letter topic and acknowledged, by reason.",
            ["reason"],
            registry=r,
        )
        self.entities = Counter("ner_entities_total", "Entities published, by label.", ["label"], registry=r)
        self.tokens_processed = Counter(
            "ner_tokens_processed_total", "Tokens scored by the engine (special tokens included).", registry=r
        )
        self.batch_documents = Histogram(
            "ner_batch_documents", "Documents per engine batch.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "ner_batch_tokens", "Tokens per engine batch.", buckets=_SIZE_BUCKETS, registry=r
        )
        self.engine_seconds = Histogram(
            "ner_engine_seconds", "Engine time per batch.", buckets=_SECONDS_BUCKETS, registry=r
        )
        self.engine_errors = Counter("ner_engine_errors_total", "Engine batches that failed.", registry=r)
        self.end_to_end_latency = Histogram(
            "ner_end_to_end_latency_seconds",
            "From the input record's timestamp to the broker's acknowledgement of its output.",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.inflight_records = Gauge(
            "ner_inflight_records", "Records read and not yet acknowledged by the broker.", registry=r
        )
        self.inflight_tokens = Gauge("ner_inflight_tokens", "Tokens of the in-flight records.", registry=r)
        self.paused_partitions = Gauge(
            "ner_paused_partitions", "Input partitions paused by backpressure.", registry=r
        )
        self.assigned_partitions = Gauge(
            "ner_assigned_partitions", "Input partitions assigned to this worker.", registry=r
        )
        self.consumer_lag = Gauge(
            "ner_consumer_lag_records",
            "Records between the committed position and the partition's end.",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter("ner_commits_total", "Successful offset commits.", registry=r)
        self.commit_failures = Counter("ner_commit_failures_total", "Offset commits that failed.", registry=r)
        self.rewinds = Counter(
            "ner_partition_rewinds_total",
            "Partitions read again from their last committed offset after a refused write or aborted transaction.",
            registry=r,
        )
        self.rebalances = Counter(
            "ner_rebalances_total", "Partition assignments and revocations.", ["event"], registry=r
        )
        self.last_progress = Gauge(
            "ner_last_progress_timestamp_seconds",
            "Unix time of the last record acknowledged (output or dead letter).",
            registry=r,
        )
