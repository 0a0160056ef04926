"""Serve the model over HTTP: POST /v1/annotate takes one document (a JSON object, or the
text itself as text/plain) or a JSON list of documents and answers with the stream's output
records. Documents of concurrent requests are batched together for the engine. Also
/healthz, /readyz, /metrics (Prometheus) and /openapi.json.

Engine, decoding and batching settings come from the NER_* variables (ner-worker settings);
the server listens on NER_HTTP_HOST:NER_HTTP_PORT unless --host/--port say otherwise.
SIGTERM stops accepting connections and finishes the requests in flight (at most
NER_DRAIN_TIMEOUT_S). Exit status: 0 after a clean stop, 2 for bad settings, 3 when the model
cannot be loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.settings import Settings

HELP = "serve POST /v1/annotate over HTTP (plus /healthz, /readyz, /metrics, /openapi.json)"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", help="address to listen on (default: NER_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (default: NER_HTTP_PORT; 0 picks a free one)")
    parser.add_argument("--max-request-documents", type=int, default=1000, metavar="N",
                        help="most documents in one request (default: %(default)s)")
    parser.add_argument("--max-request-bytes", type=int, default=32 * 1024 * 1024, metavar="BYTES",
                        help="largest request body (default: %(default)s)")


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.max_request_documents < 1 or args.max_request_bytes < 1:
        print("ner-worker serve: --max-request-documents and --max-request-bytes must be positive", file=sys.stderr)
        return 2
    host = args.host if args.host is not None else settings.http_host
    port = args.port if args.port is not None else settings.http_port
    try:
        return asyncio.run(serve(settings, host=host, port=port, max_request_documents=args.max_request_documents,
                                 max_request_bytes=args.max_request_bytes))
    except KeyboardInterrupt:
        return 130


async def serve(settings: Settings, *, host: str, port: int, max_request_documents: int,
                max_request_bytes: int) -> int:
    from aiohttp import web

    from worker import __version__
    from worker.serve.app import ServeState, build_app
    from worker.serve.metrics import ServeMetrics
    from worker.signals import stop_on_signals

    metrics = ServeMetrics()
    metrics.info.info({"version": __version__, "engine": settings.engine, "model": settings.model})
    state = ServeState(settings, metrics, max_request_documents=max_request_documents)
    runner = web.AppRunner(build_app(state, max_request_bytes=max_request_bytes), access_log=None,
                           shutdown_timeout=settings.drain_timeout_s)
    await runner.setup()
    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        for address in runner.addresses:
            log.info("serving on http://%s:%s", *address[:2])
        loading = asyncio.create_task(state.load())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done() and loading.exception() is not None:
            log.error("cannot load NER_MODEL=%s with NER_ENGINE=%s: %s", settings.model, settings.engine,
                      loading.exception())
            return 3
        await stop.wait()
        log.info("stopping: finishing the requests in flight (at most %.0fs)", settings.drain_timeout_s)
        loading.cancel()
        return 0
    finally:
        await runner.cleanup()  # stops listening, waits for requests in flight, closes connections
        await state.close()
