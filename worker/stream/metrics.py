"""Prometheus metrics of ``ner-worker run``: the shared ones (``worker.metrics``) plus the stream's
own (records, in-flight work, partitions, commits, lag).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.metrics import SECONDS_BUCKETS, EngineMetrics


class WorkerMetrics(EngineMetrics):
    """All metrics of one ``run`` process: the shared engine metrics plus the stream's own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry)
        r = self.registry
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
        self.end_to_end_latency = Histogram(
            "ner_end_to_end_latency_seconds",
            "From the input record's timestamp to the broker's acknowledgement of its output.",
            buckets=SECONDS_BUCKETS,
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
