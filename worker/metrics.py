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

import functools
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


PROCESS_LABEL = "process"
"""Names the process of a ``process_*`` series when one endpoint serves several processes."""


class ProcessesCollector(Collector):
    """The ``process_*`` series (CPU seconds, resident and virtual memory, open and maximum file
    descriptors, start time) of several processes, each sample labelled ``process="<name>"``.

    prometheus_client's multiprocess mode cannot carry these (they are read from ``/proc`` when
    scraped, not written to its files), so the process that serves ``/metrics`` reads them for
    every process it knows, at scrape time: ``processes`` returns ``{name: pid}`` of those running
    now. prometheus_client's own ``ProcessCollector`` reads each one, so every figure means what
    it means for a single process; a process that ended meanwhile contributes nothing.
    """

    def __init__(self, processes: Callable[[], dict[str, int]], registry: CollectorRegistry | None = None) -> None:
        self._processes = processes
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for name, pid in self._processes().items():
            for family in ProcessCollector(pid=functools.partial(int, pid), registry=None).collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {PROCESS_LABEL: name, **sample.labels}, sample.value)
        return families.values()


def process_metrics(registry: CollectorRegistry, processes: Callable[[], dict[str, int]] | None = None) -> Info:
    """What every serving process's registry carries besides its own series: the process,
    platform and garbage-collector metrics, and the worker's ``Info`` (returned, to be set).

    The process metrics are this process's; with ``processes`` (``{name: pid}``, see
    ``ProcessesCollector``) they are those of every process named there, labelled by name: an
    endpoint that serves several processes' series (a multi-process ``run``).
    """
    if processes is None:
        ProcessCollector(registry=registry)
    else:
        ProcessesCollector(processes, registry=registry)
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
