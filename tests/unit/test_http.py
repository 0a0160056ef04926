"""The probe and metrics endpoints, through real HTTP requests against started servers: the
``run`` command's ``HealthServer`` and ``serve``'s application share the same handlers."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from worker.http import HealthServer
from worker.metrics import EngineMetrics
from worker.serve.app import ServeState, build_app
from worker.serve.metrics import ServeMetrics
from worker.settings import Settings
from worker.stream.metrics import WorkerMetrics

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


@asynccontextmanager
async def health_server(ready: Callable[[], bool] = lambda: True) -> AsyncIterator[tuple[str, WorkerMetrics]]:
    metrics = WorkerMetrics()
    server = HealthServer(metrics.registry, health=lambda: {"main_loop": True},
                          readiness=lambda: {"engine_loaded": True, "broker_reachable": ready()},
                          host="127.0.0.1", port=0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", metrics
    finally:
        await server.close()


@asynccontextmanager
async def serve_app() -> AsyncIterator[str]:
    state = ServeState(Settings(), ServeMetrics(), max_request_documents=10)  # the engine never loads here
    runner = web.AppRunner(build_app(state, max_request_bytes=1024), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    # Only the headers a test gives: the client would ask for gzip by itself.
    async with aiohttp.ClientSession(auto_decompress=False, skip_auto_headers=("Accept-Encoding",)) as session, \
            session.request(method, url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_metrics_are_gzipped_when_the_scraper_accepts_it_and_carry_process_metrics() -> None:
    async def scenario() -> tuple[tuple[int, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]:
        async with health_server() as (url, metrics):
            metrics.records_published.inc(3)
            return await fetch(f"{url}/metrics", **{"Accept-Encoding": "gzip"}), await fetch(f"{url}/metrics")

    (status, headers, body), (plain_status, plain_headers, plain) = run(scenario())
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert "ner_records_published_total 3.0" in text
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                   "python_info", "python_gc_objects_collected_total"):
        assert f"\n{family}" in text, family
    assert plain_status == 200 and "Content-Encoding" not in plain_headers
    assert plain_headers["Content-Type"].startswith("text/plain; version=")
    assert b"ner_records_published_total 3.0" in plain and not plain.rstrip().endswith(b"# EOF")


def test_metrics_speak_openmetrics_when_the_accept_header_asks_for_it() -> None:
    async def scenario() -> tuple[int, dict[str, str], bytes]:
        async with health_server() as (url, metrics):
            metrics.engine_seconds.observe(0.2)
            return await fetch(f"{url}/metrics", Accept="application/openmetrics-text; version=1.0.0")

    status, headers, body = run(scenario())
    assert status == 200 and headers["Content-Type"].startswith(OPENMETRICS)
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert "# TYPE ner_engine_seconds histogram" in text and "ner_engine_seconds_count 1" in text


def test_probes_answer_503_with_the_false_check_named() -> None:
    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        async with health_server(ready=lambda: False) as (url, _):
            return [await fetch(f"{url}/readyz"), await fetch(f"{url}/healthz")]

    (ready_status, ready_headers, ready_body), (health_status, _, health_body) = run(scenario())
    assert ready_status == 503 and ready_headers["Content-Type"] == "application/json"
    assert orjson.loads(ready_body) == {"status": "unavailable",
                                        "checks": {"engine_loaded": True, "broker_reachable": False}}
    assert health_status == 200 and orjson.loads(health_body) == {"status": "ok", "checks": {"main_loop": True}}


def test_the_health_server_serves_nothing_else() -> None:
    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        async with health_server() as (url, _):
            return [await fetch(f"{url}/admin"), await fetch(f"{url}/metrics", "POST"),
                    await fetch(f"{url}/anything", "DELETE"), await fetch(f"{url}/metrics", "HEAD")]

    missing, posted, deleted, head = run(scenario())
    assert missing[0] == 404 and missing[2] == b"not found\n"
    assert posted[0] == deleted[0] == 405 and posted[1]["Allow"] == "GET, HEAD"
    assert head[0] == 200 and head[2] == b""


def test_serve_answers_the_same_probes_and_metrics_with_the_same_handlers() -> None:
    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        async with serve_app() as url:
            return [await fetch(f"{url}/readyz"), await fetch(f"{url}/healthz"),
                    await fetch(f"{url}/metrics", **{"Accept-Encoding": "gzip",
                                                      "Accept": "application/openmetrics-text"})]

    (ready_status, _, ready_body), (health_status, _, _), (status, headers, body) = run(scenario())
    assert ready_status == 503
    assert orjson.loads(ready_body)["checks"] == {"engine_loaded": False, "engine_ready": False}
    assert health_status == 200
    assert status == 200 and headers["Content-Encoding"] == "gzip" and headers["Content-Type"].startswith(OPENMETRICS)
    text = gzip.decompress(body).decode()
    assert "process_resident_memory_bytes" in text and 'ner_http_requests_total{method="GET",route="/readyz"' in text


def test_run_and_serve_share_one_definition_of_the_engine_metrics() -> None:
    def families(metrics: EngineMetrics) -> dict[str, tuple[str, str]]:
        return {f.name: (f.type, f.documentation) for f in metrics.registry.collect()}

    shared = families(EngineMetrics())
    stream, serve = families(WorkerMetrics()), families(ServeMetrics())
    expected = {"ner_entities", "ner_batch_documents", "ner_engine_seconds", "ner_engine_errors", "ner_worker"}
    assert expected <= set(shared)
    for name, definition in shared.items():
        assert stream[name] == serve[name] == definition, name
    assert "ner_records_published" in stream and "ner_records_published" not in serve
    assert "ner_http_requests" in serve and "ner_http_requests" not in stream


@pytest.mark.parametrize("buckets_of", ["ner_batch_tokens", "ner_engine_seconds"])
def test_shared_histograms_have_the_same_buckets_in_run_and_serve(buckets_of: str) -> None:
    def buckets(metrics: EngineMetrics) -> list[str]:
        family = next(f for f in metrics.registry.collect() if f.name == buckets_of)
        return [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]

    assert buckets(WorkerMetrics()) == buckets(ServeMetrics())
