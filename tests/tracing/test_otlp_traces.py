"""The worker's spans arrive in a real OTLP receiver, linked to the records' own traces.

The receiver is an OpenTelemetry Collector (tools/otelcol, built from the Go module proxy by
tools/install_deploy_tools.sh) with the OTLP/HTTP receiver and the debug exporter, which prints
every span it receives. A real worker on the real broker reads records, some carrying a W3C
``traceparent``, with OTEL_EXPORTER_OTLP_ENDPOINT pointing at the collector.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.deploy.toolbox import tool
from tests.fixtures.kafka import read_topic, unique_name
from tests.fixtures.ports import free_port
from tests.integration.worker_process import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.deploy]

TRACED, UNTRACED = 12, 4


@dataclass
class Span:
    trace_id: str = ""
    parent_id: str = ""
    span_id: str = ""
    name: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)


def parse_debug_output(text: str) -> list[Span]:
    """The spans of the debug exporter's `verbosity: detailed` output."""
    spans: list[Span] = []
    in_links = False
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"^Span #\d+", line):
            spans.append(Span())
            in_links = False
            continue
        if not spans:
            continue
        if line.startswith("Links:"):
            in_links = True
            continue
        match = re.match(r"^(?:-> )?(Trace ID|Parent ID|ID|Name)\s*:\s*(.*)$", line)
        if not match:
            continue
        key, value = match.groups()
        span = spans[-1]
        if in_links:
            if key == "Trace ID":
                span.links.append((value, ""))
            elif key == "ID" and span.links:
                span.links[-1] = (span.links[-1][0], value)
        elif key == "Trace ID":
            span.trace_id = value
        elif key == "Parent ID":
            span.parent_id = value
        elif key == "ID":
            span.span_id = value
        elif key == "Name":
            span.name = value
    return spans


class Collector:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "otelcol.log"
        config = {
            "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{self.port}"}}}},
            "exporters": {"debug": {"verbosity": "detailed"}},
            "service": {
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
            },
        }
        self.config = workdir / "otelcol.yaml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Collector:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(tool("otelcol")), f"--config={self.config}"], stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while "Everything is ready" not in self.log():
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.2)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    receiver = Collector(tmp_path).start()
    try:
        yield receiver
    finally:
        receiver.stop()


def traceparent() -> tuple[str, str, bytes]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01".encode()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send(topic, value, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


def test_spans_reach_the_collector_as_children_of_the_records_traces(
    collector: Collector, kafka_bootstrap: str, kafka_topics: Callable[[Mapping[str, int]], dict[str, str]],
    tmp_path: Path,
) -> None:
    topics = kafka_topics({"trace-in": 1, "trace-out": 1, "trace-dead": 1})
    worker = WorkerProcess(
        {
            "NER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NER_INPUT_TOPIC": topics["trace-in"],
            "NER_OUTPUT_TOPIC": topics["trace-out"],
            "NER_DEAD_LETTER_TOPIC": topics["trace-dead"],
            "NER_GROUP_ID": unique_name("trace-group"),
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_SERVICE_NAME": "ner-under-test",
        },
        tmp_path / "worker.log",
    )
    inputs: dict[str, tuple[str, str]] = {}  # document id -> (trace id, producer's span id)
    records = []
    for n in range(TRACED + UNTRACED):
        value = orjson.dumps({"id": f"doc-{n}", "text": f"Ada Lovelace met Charles Babbage in London, day {n}."})
        headers = [("source", b"test")]
        if n < TRACED:
            trace_id, span_id, header = traceparent()
            inputs[f"doc-{n}"] = (trace_id, span_id)
            headers.append(("traceparent", header))
        records.append((value, headers))
    try:
        worker.start().wait_ready(timeout=300)
        asyncio.run(produce(kafka_bootstrap, topics["trace-in"], records))
        published = asyncio.run(read_topic(kafka_bootstrap, topics["trace-out"], expect=len(records), timeout=180))
    finally:
        worker.terminate()  # a clean stop flushes the spans still queued
    assert len(published) == len(records), worker.log()

    # The output of a traced record continues the producer's trace with a span of the worker.
    outputs: dict[str, tuple[str, str]] = {}
    for record in published:
        headers = dict(record.headers)
        document = orjson.loads(record.value or b"{}")
        assert headers["source"] == b"test", "the other headers travel unchanged"
        if document["id"] in inputs:
            _, trace_id, span_id, _ = headers["traceparent"].decode().split("-")
            outputs[document["id"]] = (trace_id, span_id)
        else:
            assert "traceparent" not in headers, "no trace is made up for an untraced record"
    assert {doc: trace for doc, (trace, _) in outputs.items()} == {doc: t for doc, (t, _) in inputs.items()}

    deadline = time.monotonic() + 30
    while True:
        spans = parse_debug_output(collector.log())
        if sum(s.name == "ner.record" for s in spans) >= TRACED or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    by_id = {s.span_id: s for s in spans}
    assert {"ner.poll", "ner.tokenize", "ner.batch", "ner.engine", "ner.decode", "ner.publish", "ner.commit"} <= {
        s.name for s in spans
    }, collector.log()[-3000:]

    # ner.record: the producer's span is its parent, and it is what the output record names.
    record_spans = {(s.trace_id, s.parent_id): s for s in spans if s.name == "ner.record"}
    for doc, (trace_id, producer_span) in inputs.items():
        span = record_spans[(trace_id, producer_span)]
        assert outputs[doc] == (trace_id, span.span_id), doc
        [(_, batch_id)] = span.links
        assert by_id[batch_id].name == "ner.batch"

    # The batches are linked to every traced record they held; the stages are their children.
    linked = {link for s in spans if s.name == "ner.batch" for link in s.links}
    assert set(inputs.values()) <= linked
    for stage in ("ner.engine", "ner.decode", "ner.publish"):
        for span in (s for s in spans if s.name == stage):
            assert by_id[span.parent_id].name == "ner.batch", stage
    for span in (s for s in spans if s.name == "ner.tokenize"):
        assert by_id[span.parent_id].name == "ner.poll"
