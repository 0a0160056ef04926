"""Prometheus metrics of ``ner-worker run``: the shared ones (``worker.metrics``) plus the stream's
own (records, in-flight work, partitions, commits, lag).

With several stream processes (``NER_PROCESSES``) every process writes its series to
prometheus_client's multiprocess files and the supervisor exports their merge: counters and
histograms add up; each gauge says how (``multiprocess_mode``, ignored in a single process):
in-flight work and partitions add up over the live processes, the lag of a partition is the
latest value written (its owner changes with rebalances), the last progress is the latest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from worker.metrics import SECONDS_BUCKETS, EngineMetrics, process_metrics


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
            "ner_inflight_records", "Records read and not yet acknowledged by the broker.",
            multiprocess_mode="livesum", registry=r,
        )
        self.inflight_tokens = Gauge("ner_inflight_tokens", "Tokens of the in-flight records.",
                                     multiprocess_mode="livesum", registry=r)
        self.paused_partitions = Gauge(
            "ner_paused_partitions", "Input partitions paused by backpressure.", multiprocess_mode="livesum",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "ner_assigned_partitions", "Input partitions assigned to this worker.", multiprocess_mode="livesum",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "ner_consumer_lag_records",
            "Records between the committed position and the partition's end.",
            ["topic", "partition"],
            multiprocess_mode="livemostrecent",
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
            multiprocess_mode="max",
            registry=r,
        )

    def forget_lag(self, topic: str, partition: int) -> None:
        """A revoked partition's lag is its new owner's to report."""
        if getattr(values.ValueClass, "_multiprocess", False):
            # A series cannot be removed from the multiprocess files: write 0, which the new
            # owner's next value (a later one: the merge keeps the latest) replaces.
            self.consumer_lag.labels(topic, str(partition)).set(0)
            return
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(topic, str(partition))


class SupervisorMetrics:
    """``/metrics`` of a multi-process ``run``: every child's series (stream processes, engine
    host), merged from the multiprocess files in ``multiprocess_dir``, plus the supervisor's own.

    The process metrics (``process_*``) are every process's, read from ``/proc`` at scrape time
    for the pids ``processes`` names (``{name: pid}``) and labelled ``process="<name>"``:
    prometheus_client's multiprocess mode carries none. The ``Info`` and the ``python_*`` series
    are the supervisor's.
    """

    def __init__(self, multiprocess_dir: Path, processes: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]
        self.info = process_metrics(self.registry, processes)
        self.processes = Gauge("ner_stream_processes", "Stream processes running.", registry=self.registry)
        self.restarts = Counter(
            "ner_stream_process_restarts_total", "Stream processes restarted after they died.", registry=self.registry
        )
        self._multiprocess_dir = multiprocess_dir

    def process_ended(self, pid: int) -> None:
        """Drop the ended process's live gauges (in-flight work, partitions, lag); its counters stay."""
        mark_process_dead(pid, str(self._multiprocess_dir))  # type: ignore[no-untyped-call]
