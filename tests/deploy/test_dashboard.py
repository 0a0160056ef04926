"""The Grafana dashboard, read statically: its PromQL uses only the worker's real metric names and
covers what operators look at. (test_prometheus_e2e.py runs every expression on real data.)"""

from __future__ import annotations

import re

import pytest

from tests.deploy.dashboard import expressions, load, panels
from worker.serve.metrics import ServeMetrics
from worker.stream.metrics import WorkerMetrics

pytestmark = pytest.mark.deploy


def exported_names() -> set[str]:
    """Every series name the registries of `run` and `serve` export (histograms: _bucket, _sum, _count)."""
    names = set()
    families = [*WorkerMetrics().registry.collect(), *ServeMetrics().registry.collect()]
    for family in families:
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        elif family.type == "info":
            names.add(family.name + "_info")
    return names


def test_dashboard_uses_only_metrics_the_worker_exports() -> None:
    exported = exported_names()
    for title, expr in expressions(load()):
        used = set(re.findall(r"\b((?:ner|process)_[a-z_]+)\b", expr))
        assert used, f"{title}: {expr} reads no worker metric"
        assert used <= exported, f"{title}: unknown metrics {used - exported}"


def test_dashboard_covers_what_operators_look_at() -> None:
    text = " ".join(expr for _, expr in expressions(load()))
    for needle in (
        "rate(ner_records_received_total",  # throughput
        "rate(ner_records_published_total",
        "histogram_quantile(0.99, sum by (le) (rate(ner_end_to_end_latency_seconds_bucket",  # latency
        "ner_batch_documents_bucket",  # batch size
        "ner_batch_tokens_bucket",
        "ner_engine_seconds_bucket",  # engine time
        "ner_consumer_lag_records",  # lag
        "sum by (reason) (rate(ner_records_dead_lettered_total",  # dead letters by reason
        "sum by (job) (increase(ner_engine_errors_total",  # engine errors
        "process_resident_memory_bytes",  # memory and CPU of each process
        "rate(process_cpu_seconds_total",
        "sum by (route, status) (rate(ner_http_requests_total",  # the serve front end
        "ner_http_request_duration_seconds_bucket",
    ):
        assert needle in text, needle


def test_every_query_filters_on_the_job_variable_and_uses_the_datasource_variable() -> None:
    dashboard = load()
    for title, expr in expressions(dashboard):
        assert 'job=~"$job"' in expr, f"{title}: {expr}"
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
