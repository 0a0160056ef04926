"""A real Prometheus scrapes a real worker on the real broker.

The worker (`ner-worker run`) processes good and malformed documents; Prometheus (Debian's
package) scrapes its /metrics every second. The counters Prometheus holds must equal what the
topics hold; every PromQL expression of the Grafana dashboard must return data from this
Prometheus; and the chart's alert rules must load and evaluate without error.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.deploy import dashboard
from tests.deploy.prometheus_server import PrometheusServer
from tests.deploy.toolbox import only, render
from tests.fixtures.kafka import read_topic, unique_name
from tests.integration.test_serve import ServeProcess
from tests.integration.worker_process import WorkerProcess

pytestmark = [pytest.mark.deploy, pytest.mark.integration]

JOB = "kafka-ner-worker"  # what the chart's alert rules select by default
SERVE_JOB = "kafka-ner-serve"  # `ner-worker serve`, scraped as a job of its own
GOOD_DOCUMENTS = 150
MALFORMED = {b'{"text": "cut short': "invalid_json", b'{"title": "no text"}': "missing_text"}
MALFORMED_EACH = 5
REASON_HEADER = "ner.error.reason"
PEOPLE = ["Angela Merkel", "Barack Obama", "Marie Curie", "Ada Lovelace"]
PLACES = ["Paris", "Berlin", "Lisbon", "Kyoto"]


def documents() -> list[tuple[bytes, bytes]]:
    values = []
    for n in range(GOOD_DOCUMENTS):
        text = f"{PEOPLE[n % 4]} flew to {PLACES[n % 3]} with {PEOPLE[(n + 1) % 4]} on day {n}."
        values.append((f"doc-{n}".encode(), orjson.dumps({"id": f"doc-{n}", "text": text})))
    for raw in MALFORMED:
        values += [(f"bad-{i}".encode(), raw) for i in range(MALFORMED_EACH)]
    return values


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
def stack(
    kafka_bootstrap: str, kafka_topics: Callable[[Mapping[str, int]], dict[str, str]], tmp_path: Path
) -> Iterator[tuple[dict[str, str], WorkerProcess, PrometheusServer]]:
    """A ready worker on fresh topics, a ready `serve` front end, and a Prometheus that has already
    scraped both a few times."""
    topics = kafka_topics({"prom-in": 2, "prom-out": 2, "prom-dead": 1})
    worker = WorkerProcess(
        {
            "NER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NER_INPUT_TOPIC": topics["prom-in"],
            "NER_OUTPUT_TOPIC": topics["prom-out"],
            "NER_DEAD_LETTER_TOPIC": topics["prom-dead"],
            "NER_GROUP_ID": unique_name("prom-group"),
            "NER_COMMIT_INTERVAL_MS": "200",
        },
        tmp_path / "worker.log",
    )
    rules = only(render(values={"metrics": {"prometheusRule": {"enabled": True}}}, tmp_path=tmp_path), "PrometheusRule")
    rule_file = tmp_path / "alerts.yml"
    rule_file.write_text(yaml.safe_dump({"groups": rules["spec"]["groups"]}), encoding="utf-8")
    served = ServeProcess(tmp_path / "serve.log")
    prometheus = PrometheusServer(tmp_path, JOB, [f"127.0.0.1:{worker.port}"], [rule_file],
                                  more_jobs={SERVE_JOB: [f"127.0.0.1:{served.port}"]})
    try:
        worker.start().wait_ready(timeout=300)
        served.wait_ready(timeout_s=300)
        prometheus.start()
        prometheus.wait_for(f'up{{job="{JOB}"}}', 1)
        prometheus.wait_for(f'up{{job="{SERVE_JOB}"}}', 1)
        # Requests to the front end before and after the first scrapes, so its rates have data.
        for _ in range(3):
            assert served.post_json({"id": "a", "text": "Ada Lovelace lived in London."})[0] == 200
            time.sleep(1)
        # Samples from before any record arrives give rate() and increase() their baseline.
        deadline = time.monotonic() + 30
        while (prometheus.scalar(f'count_over_time(ner_records_received_total{{job="{JOB}"}}[1m])') or 0) < 3:
            assert time.monotonic() < deadline, prometheus.log()
            time.sleep(0.5)
        yield topics, worker, prometheus
    finally:
        prometheus.stop()
        served.stop()
        if worker.process is not None and worker.process.poll() is None:
            worker.terminate()


def test_prometheus_counts_what_the_worker_processed(
    stack: tuple[dict[str, str], WorkerProcess, PrometheusServer], kafka_bootstrap: str
) -> None:
    topics, worker, prometheus = stack
    sent = documents()
    asyncio.run(produce(kafka_bootstrap, topics["prom-in"], sent))
    dead_expected = len(MALFORMED) * MALFORMED_EACH
    published = asyncio.run(read_topic(kafka_bootstrap, topics["prom-out"], expect=GOOD_DOCUMENTS, timeout=240))
    dead = asyncio.run(read_topic(kafka_bootstrap, topics["prom-dead"], expect=dead_expected, timeout=120))
    assert len(published) == GOOD_DOCUMENTS and len(dead) == dead_expected, worker.log()

    # What the topics hold, counted from the records themselves.
    reasons = Counter(dict(r.headers)[REASON_HEADER].decode() for r in dead)
    entities = Counter(e["label"] for r in published for e in orjson.loads(r.value or b"{}")["entities"])
    assert reasons == Counter({reason: MALFORMED_EACH for reason in MALFORMED.values()})
    assert sum(entities.values()) > 0, "the demo model found no entity at all"

    sel = f'job="{JOB}"'
    prometheus.wait_for(f"sum(ner_records_received_total{{{sel}}})", len(sent))
    prometheus.wait_for(f"sum(ner_records_published_total{{{sel}}})", len(published))
    prometheus.wait_for(f"sum(ner_records_dead_lettered_total{{{sel}}})", len(dead))
    for reason, count in reasons.items():
        prometheus.wait_for(f'sum(ner_records_dead_lettered_total{{{sel}, reason="{reason}"}})', count)
    for label, count in entities.items():
        prometheus.wait_for(f'sum(ner_entities_total{{{sel}, label="{label}"}})', count)
    # Prometheus holds the same numbers as the worker's own /metrics page, histograms included.
    for series in ("ner_tokens_processed_total", "ner_batch_documents_sum", "ner_batch_tokens_count"):
        prometheus.wait_for(f"sum({series}{{{sel}}})", worker.metric(series))
    assert (prometheus.scalar(f"sum(ner_tokens_processed_total{{{sel}}})") or 0) > 0
    assert worker.metric("ner_records_published_total") == len(published)

    check_dashboard_queries_return_data(prometheus)
    check_alert_rules_evaluate(prometheus)


def dashboard_queries_without_data(prometheus: PrometheusServer) -> list[str]:
    problems = []
    for title, expr in dashboard.expressions(dashboard.load()):
        # "All" jobs: the stream worker's panels read one job, the serve panels the other.
        query = dashboard.concrete(expr, job_regex=f"{JOB}|{SERVE_JOB}", rate_interval="5m")
        result = prometheus.query(query)
        values = [float(series["value"][1]) for series in result]
        if not values or all(math.isnan(v) for v in values):
            problems.append(f"{title}: {query} -> {result}")
    return problems


def check_dashboard_queries_return_data(prometheus: PrometheusServer) -> None:
    # The lag gauges appear at the worker's next lag check (every 5 s) after its first commit,
    # and rates need a few scrapes after the last record: wait for them, a bounded time.
    deadline = time.monotonic() + 30
    while (problems := dashboard_queries_without_data(prometheus)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not problems, "dashboard queries without data:\n" + "\n".join(problems)
    # A control: a query on a metric the worker does not export has no data, so the check can fail.
    assert prometheus.query(dashboard.concrete('sum(rate(ner_no_such_total{job=~"$job"}[5m]))', JOB, "5m")) == []
    # The dashboard's $job variable: label_values(ner_worker_info, job) lists both commands.
    jobs = prometheus.api("label/job/values", **{"match[]": "ner_worker_info"})
    assert {JOB, SERVE_JOB} <= set(jobs)


def check_alert_rules_evaluate(prometheus: PrometheusServer) -> None:
    deadline = time.monotonic() + 30
    while True:
        groups = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(
            not rule.get("lastEvaluation", "0001").startswith("0001") and rule["health"] != "unknown" for rule in rules
        ):
            break
        assert time.monotonic() < deadline, f"rules not evaluated: {rules}"
        time.sleep(0.5)
    assert {rule["name"] for rule in rules} >= {
        "NerWorkerDown",
        "NerWorkerConsumerLagGrowing",
        "NerWorkerDeadLetterRate",
        "NerWorkerNoProgress",
        "NerWorkerEngineErrors",
    }
    broken = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not broken, broken
