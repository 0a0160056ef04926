"""OpenTelemetry traces of the stream: one span per stage of each batch, linked to the records.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set:
then spans go by OTLP/HTTP to that endpoint, with the SDK's standard ``OTEL_*`` variables
(``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER`` ...). Off, every
hook is a method of ``Tracing`` that does nothing, and OpenTelemetry is not even imported.

What a trace shows:

* ``ner.poll`` (records fetched from Kafka) with ``ner.tokenize`` (parsing and tokenizing them)
  as its child; linked to the W3C ``traceparent`` of every record it read.
* ``ner.batch``, one per engine batch, linked to its records' ``traceparent``, with the children
  ``ner.engine``, ``ner.decode`` and ``ner.publish``.
* ``ner.record``, one per record that arrived with a ``traceparent``: a child of the producer's
  span (same trace), linked to its batch; the output record carries this span as its own
  ``traceparent``, so the consumer of the output topic continues the same trace.
* ``ner.commit`` for each offset commit.

Batches mix records of many traces, so a batch cannot be the child of all of them: it is linked
to each (OpenTelemetry's model for batch processing), and each record gets its own child span.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span, Tracer

Headers = Sequence[tuple[str, bytes]]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class BatchTrace:
    """The spans of one engine batch; this base class records nothing."""

    def engine(self, started_ns: int, engine_seconds: float, ended_ns: int) -> None:
        """Engine and decoding of the batch: [started, started + engine_seconds] was the engine."""

    @contextlib.contextmanager
    def publish(self) -> Iterator[None]:
        yield

    def record_headers(self, headers: Headers) -> Headers:
        """The headers the output of one record carries (its own ``traceparent`` when traced)."""
        return headers

    def end(self) -> None:
        pass


_NO_BATCH = BatchTrace()


class Tracing:
    """The hooks the stream calls; this base class is tracing switched off, and costs a call."""

    enabled = False

    def poll(self, started_ns: int, headers: Iterable[Headers]) -> None:
        pass

    @contextlib.contextmanager
    def tokenize(self) -> Iterator[None]:
        yield

    def batch(self, headers: Iterable[Headers]) -> BatchTrace:
        return _NO_BATCH

    @contextlib.contextmanager
    def commit(self, partitions: int) -> Iterator[None]:
        yield

    def shutdown(self) -> None:
        pass


def now_ns() -> int:
    return time.time_ns()


def tracing_from_environment(environ: dict[str, str] | None = None, *, service_version: str = "") -> Tracing:
    """OpenTelemetry tracing when an OTLP endpoint is configured, else the no-op hooks."""
    env = os.environ if environ is None else environ
    if not any(env.get(name) for name in _ENDPOINT_VARIABLES):
        return Tracing()
    return OtelTracing.from_environment(service_version=service_version)


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, tracer: Tracer, provider: Any) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._tracer = tracer
        self._provider = provider
        self._propagator = TraceContextTextMapPropagator()
        self._poll_context: Any = None  # the latest poll's span: the parent of its tokenize span

    @classmethod
    def from_environment(cls, *, service_version: str = "") -> OtelTracing:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; this is the default name.
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "kafka-ner-worker"),
                                    "service.version": service_version})
        provider = TracerProvider(resource=resource)  # the sampler follows OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider.get_tracer("kafka-ner-worker"), provider)

    # --- the records' own context -----------------------------------------------------------

    def context_of(self, headers: Headers) -> Any:
        """The producer's span context from a record's W3C headers, or None."""
        from opentelemetry import trace

        carrier = {k: v.decode("latin-1") for k, v in headers if k in (TRACEPARENT, TRACESTATE)}
        if TRACEPARENT not in carrier:
            return None
        span_context = trace.get_current_span(self._propagator.extract(carrier)).get_span_context()
        return span_context if span_context.is_valid else None

    def links(self, headers: Iterable[Headers]) -> list[Link]:
        from opentelemetry.trace import Link

        contexts = (self.context_of(h) for h in headers)
        return [Link(c) for c in contexts if c is not None]

    def inject(self, headers: Headers, span: Span) -> Headers:
        from opentelemetry import trace

        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, trace.set_span_in_context(span))
        kept = [(k, v) for k, v in headers if k not in (TRACEPARENT, TRACESTATE)]
        return (*kept, *((k, v.encode("latin-1")) for k, v in carrier.items()))

    # --- hooks ------------------------------------------------------------------------------

    def poll(self, started_ns: int, headers: Iterable[Headers]) -> None:
        from opentelemetry import trace

        records = list(headers)
        span = self._tracer.start_span("ner.poll", start_time=started_ns, links=self.links(records),
                                       attributes={"messaging.batch.message_count": len(records)})
        span.end()
        self._poll_context = trace.set_span_in_context(span)

    @contextlib.contextmanager
    def tokenize(self) -> Iterator[None]:
        with self._tracer.start_as_current_span("ner.tokenize", context=self._poll_context):
            yield

    def batch(self, headers: Iterable[Headers]) -> BatchTrace:
        records = list(headers)
        span = self._tracer.start_span("ner.batch", links=self.links(records),
                                       attributes={"messaging.batch.message_count": len(records)})
        return _OtelBatch(self, span)

    @contextlib.contextmanager
    def commit(self, partitions: int) -> Iterator[None]:
        with self._tracer.start_as_current_span("ner.commit", attributes={"ner.partitions": partitions}):
            yield

    def shutdown(self) -> None:
        self._provider.shutdown()  # flushes the spans still queued


class _OtelBatch(BatchTrace):
    def __init__(self, tracing: OtelTracing, span: Span) -> None:
        from opentelemetry import trace

        self._tracing = tracing
        self._tracer = tracing._tracer
        self._span = span
        self._context = trace.set_span_in_context(span)
        self._started_ns = now_ns()

    def engine(self, started_ns: int, engine_seconds: float, ended_ns: int) -> None:
        engine_end = min(ended_ns, started_ns + int(engine_seconds * 1e9))
        self._tracer.start_span("ner.engine", context=self._context, start_time=started_ns).end(end_time=engine_end)
        self._tracer.start_span("ner.decode", context=self._context, start_time=engine_end).end(end_time=ended_ns)

    @contextlib.contextmanager
    def publish(self) -> Iterator[None]:
        with self._tracer.start_as_current_span("ner.publish", context=self._context):
            yield

    def record_headers(self, headers: Headers) -> Headers:
        from opentelemetry import trace
        from opentelemetry.trace import Link, NonRecordingSpan

        producer = self._tracing.context_of(headers)
        if producer is None:
            return headers
        parent = trace.set_span_in_context(NonRecordingSpan(producer))
        span = self._tracer.start_span("ner.record", context=parent, start_time=self._started_ns,
                                       links=[Link(self._span.get_span_context())])
        span.end()
        return self._tracing.inject(headers, span)

    def end(self) -> None:
        self._span.end()
