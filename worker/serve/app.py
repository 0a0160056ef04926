"""The HTTP application of ``ner-worker serve`` (aiohttp): routes, request parsing, answers.

A document goes through the stream's own ``parse_value`` (so the same input is rejected for
the same reason), the shared ``Annotator`` (through the micro-batcher) and ``output_value``
(so the answer is the stream's output record). The server listens before the model is
loaded: /healthz answers at once, /readyz and /v1/annotate say 503 until the engine is ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from worker import __version__
from worker.annotator import Annotator
from worker.engine import Engine
from worker.http import probe_routes
from worker.output import OutputControls
from worker.records import (
    EMPTY_VALUE,
    INVALID_JSON,
    INVALID_UTF8,
    Document,
    ParseOptions,
    Rejection,
    interleave,
    ner_block,
    output_value,
    parse_value,
)
from worker.serve.batching import MicroBatcher, Overloaded
from worker.serve.metrics import ServeMetrics
from worker.serve.openapi import openapi_document
from worker.settings import Settings
from worker.text.tokenize import EncodedText

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_MALFORMED = frozenset({INVALID_JSON, INVALID_UTF8, EMPTY_VALUE})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, reason: str, message: str, **headers: str) -> web.Response:
    body = orjson.dumps({"error": {"reason": reason, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


class ServeState:
    """The engine, batcher and limits behind the routes; the engine loads after the server listens."""

    def __init__(self, settings: Settings, metrics: ServeMetrics, *, max_request_documents: int,
                 engine: Engine | None = None) -> None:
        self.settings = settings
        # A request says its format by its content type, whatever NER_INPUT_FORMAT says.
        self.json_input = dataclasses.replace(ParseOptions.from_settings(settings), input_format="json",
                                              words_field=settings.words_field)
        self.text_input = dataclasses.replace(self.json_input, input_format="text")
        self.metrics = metrics
        self.max_request_documents = max_request_documents
        self.output_controls = OutputControls.from_settings(settings)
        self.annotator: Annotator | None = None
        self.batcher: MicroBatcher | None = None
        self._engine = engine

    async def load(self) -> None:
        annotator = await asyncio.to_thread(Annotator.from_settings, self.settings, self._engine)
        await annotator.engine.start()
        batcher = MicroBatcher(
            annotator, self.metrics, max_documents=self.settings.max_batch_documents,
            max_tokens=self.settings.max_batch_tokens, max_wait_s=self.settings.max_batch_wait_ms / 1000,
            max_concurrent=self.settings.max_concurrent_batches, max_queued=self.settings.max_inflight_records,
        )
        batcher.start()
        self.annotator, self.batcher = annotator, batcher
        log.info("engine %s ready with model %s", self.settings.engine, annotator.model_name)

    def ready(self) -> bool:
        return self.annotator is not None and self.annotator.engine.ready()

    def readiness(self) -> dict[str, bool]:
        return {"engine_loaded": self.annotator is not None, "engine_ready": self.ready()}

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self.annotator is not None:
            await self.annotator.engine.close()


def build_app(state: ServeState, *, max_request_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes, middlewares=[_observe(state.metrics)])
    settings = state.settings
    openapi = orjson.dumps(openapi_document(text_field=settings.text_field, words_field=settings.words_field,
                                            output=state.output_controls,
                                            max_request_documents=state.max_request_documents, version=__version__))

    async def annotate(request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-ID", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        response = await _annotate(state, request, request_id)
        response.headers["X-Request-ID"] = request_id
        return response

    async def openapi_json(_: web.Request) -> web.Response:
        return web.Response(body=openapi, content_type="application/json")

    app.router.add_post("/v1/annotate", annotate)
    app.router.add_get("/openapi.json", openapi_json)
    # Answering at all proves the event loop is responsive: the one health check serve has.
    app.add_routes(probe_routes(state.metrics.registry, health=lambda: {"event_loop": True},
                                readiness=state.readiness))
    return app


def _observe(metrics: ServeMetrics) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # 404, 405 from the router; 413 from the body limit
            response = _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
        except Exception:  # a bug must answer 500 (and be logged), never kill the connection silently
            log.exception("unexpected error answering %s %s", request.method, request.path)
            response = _error(500, "internal_error", "unexpected server error")
        metrics.http_requests.labels(route, request.method, str(response.status)).inc()
        metrics.http_seconds.labels(route).observe(time.perf_counter() - started)
        return response

    return middleware


async def _annotate(state: ServeState, request: web.Request, request_id: str) -> web.Response:
    if state.batcher is None or state.annotator is None or not state.ready():
        return _error(503, "not_ready", "the engine is not ready; retry later", **{"Retry-After": "1"})
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(413, "request_too_large", exc.text or "the request body is too large")
    if request.content_type == "text/plain":
        parsed: list[Document | Rejection] = [parse_value(body, state.text_input)]
        single = True
    else:  # JSON, whatever the client called it (curl -d says form-urlencoded)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = None
        single = not isinstance(value, list)
        if single:
            parsed = [parse_value(body, state.json_input)]
        elif len(value) > state.max_request_documents:
            return _error(422, "too_many_documents",
                          f"{len(value)} documents; at most {state.max_request_documents} per request")
        else:
            # Each item through the stream's own checks (depth, size, text field, type).
            parsed = [parse_value(orjson.dumps(item), state.json_input) for item in value]
    results = await _annotate_documents(state, parsed)
    if isinstance(results, web.Response):
        return results
    return _answer(state, parsed, results, request_id, single)


async def _annotate_documents(state: ServeState, parsed: list[Document | Rejection],
                              ) -> list[tuple[list[Any] | Rejection, float]] | web.Response:
    assert state.annotator is not None and state.batcher is not None
    documents = [item for item in parsed if isinstance(item, Document)]
    encoded = state.annotator.tokenize([doc.tokenizer_input for doc in documents])
    valid = [item for item in encoded if isinstance(item, EncodedText)]
    try:
        scored = await state.batcher.annotate(valid)
    except Overloaded as exc:
        return _error(503, "overloaded", str(exc), **{"Retry-After": "1"})
    except Exception as exc:  # the engine failed (after its own retries): the client may retry
        log.warning("engine failed on a request: %s", exc)
        return _error(503, "engine_failed", f"the engine failed: {exc}", **{"Retry-After": "1"})
    # Rejected documents never reach the engine: they take no engine time.
    per_document = [(item, 0.0) if isinstance(item, Rejection) else item for item in interleave(encoded, scored)]
    return [(item, 0.0) if isinstance(item, Rejection) else item for item in interleave(parsed, per_document)]


def _answer(state: ServeState, parsed: list[Document | Rejection], results: list[tuple[list[Any] | Rejection, float]],
            request_id: str, single: bool) -> web.Response:
    model = state.annotator.model_name if state.annotator is not None else ""
    outputs: list[bytes] = []
    errors: list[dict[str, Any]] = []
    for index, (document, (entities, engine_seconds)) in enumerate(zip(parsed, results, strict=True)):
        if isinstance(entities, Rejection) or not isinstance(document, Document):
            rejection = entities if isinstance(entities, Rejection) else document
            assert isinstance(rejection, Rejection)
            state.metrics.documents_rejected.labels(rejection.reason).inc()
            errors.append({"index": index, "reason": rejection.reason, "message": rejection.message})
            outputs.append(b"null")
            continue
        ner = ner_block(model, {"request": request_id, "index": index}, document_engine_seconds=engine_seconds)
        outputs.append(output_value(document, entities, ner=ner, controls=state.output_controls))
        state.metrics.documents_annotated.inc()
        for entity in entities:
            state.metrics.entities.labels(entity["label"]).inc()
    if single:
        if errors:
            reason, message = errors[0]["reason"], errors[0]["message"]
            return _error(400 if reason in _MALFORMED else 422, reason, message)
        return web.Response(body=outputs[0], content_type="application/json")
    body = b'{"documents":[' + b",".join(outputs) + b'],"errors":' + orjson.dumps(errors) + b"}"
    return web.Response(body=body, content_type="application/json")
