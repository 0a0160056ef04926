"""worker.tracing with the OpenTelemetry SDK's in-memory exporter: spans, parents, links, headers."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from worker.tracing import OtelTracing, Tracing, tracing_from_environment

TRACE_ID, PRODUCER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
TRACED = (("source", b"x"), ("traceparent", f"00-{TRACE_ID}-{PRODUCER_SPAN}-01".encode()))
UNTRACED = (("source", b"y"),)


def in_memory() -> tuple[OtelTracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracing(provider.get_tracer("test"), provider), exporter


def hexes(span: Any) -> tuple[str, str]:
    context = span.get_span_context() if hasattr(span, "get_span_context") else span
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_tracing_is_off_without_an_endpoint_and_on_with_one() -> None:
    assert type(tracing_from_environment({})) is Tracing
    assert not tracing_from_environment({"OTEL_SERVICE_NAME": "x"}).enabled
    on = tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
    assert isinstance(on, OtelTracing)
    on.shutdown()


def test_an_output_continues_its_input_trace_through_a_record_span_linked_to_the_batch() -> None:
    tracing, exporter = in_memory()
    batch = tracing.batch([TRACED, UNTRACED])
    with batch.publish():
        out = dict(batch.record_headers(TRACED))
        untouched = batch.record_headers(UNTRACED)
    batch.end()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    record, batch_span = spans["ner.record"], spans["ner.batch"]
    assert hexes(record)[0] == TRACE_ID
    assert f"{record.parent.span_id:016x}" == PRODUCER_SPAN
    assert out["traceparent"].decode() == f"00-{TRACE_ID}-{hexes(record)[1]}-01"
    assert out["source"] == b"x"
    assert untouched == UNTRACED, "an untraced record gets no made-up trace"
    assert [hexes(link.context) for link in record.links] == [hexes(batch_span)]
    assert [hexes(link.context) for link in batch_span.links] == [(TRACE_ID, PRODUCER_SPAN)]
    assert spans["ner.publish"].parent.span_id == batch_span.get_span_context().span_id


def test_engine_and_decode_split_the_batch_time_and_tokenize_is_a_child_of_poll() -> None:
    tracing, exporter = in_memory()
    tracing.poll(1_000, [TRACED])
    with tracing.tokenize():
        pass
    batch = tracing.batch([TRACED])
    batch.engine(2_000_000_000, 0.5, 3_000_000_000)
    batch.end()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert (spans["ner.engine"].start_time, spans["ner.engine"].end_time) == (2_000_000_000, 2_500_000_000)
    assert (spans["ner.decode"].start_time, spans["ner.decode"].end_time) == (2_500_000_000, 3_000_000_000)
    assert spans["ner.tokenize"].parent.span_id == spans["ner.poll"].get_span_context().span_id
    assert spans["ner.poll"].attributes["messaging.batch.message_count"] == 1


def test_a_malformed_traceparent_is_ignored() -> None:
    tracing, exporter = in_memory()
    headers = (("traceparent", b"not-a-trace"),)
    batch = tracing.batch([headers])
    assert batch.record_headers(headers) == headers
    batch.end()
    assert [s.name for s in exporter.get_finished_spans()] == ["ner.batch"]
