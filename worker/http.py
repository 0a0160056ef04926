"""``/metrics``, ``/healthz`` and ``/readyz`` on aiohttp: the handlers every command shares, and
the small server ``run`` listens with (``serve`` adds the same handlers to its own application).

``/metrics`` is prometheus_client's own exposition: the text format, or OpenMetrics when the
scraper's ``Accept`` header asks for it, gzip-compressed when ``Accept-Encoding`` allows it.
``/healthz`` and ``/readyz`` report the checks the command supplies as JSON, 503 when one is
false. Answering at all proves the event loop is responsive.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

log = logging.getLogger(__name__)

Check = Callable[[], dict[str, bool]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _UnparsableRequests(logging.Filter):
    """aiohttp answers a request it cannot parse (an oversized line, garbage) with 400 and logs
    it as an ERROR with a traceback. From a scanner that is noise that buries real errors: keep
    one DEBUG line, or nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        problem = record.exc_info[1] if record.exc_info else None
        if not isinstance(problem, HttpProcessingError):
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "unparsable request from %s: %s", (remote, problem.message)
        record.exc_info = None
        return True


_request_errors = logging.getLogger(__name__ + ".requests")
_request_errors.addFilter(_UnparsableRequests())

# Probes answer in milliseconds: at exit, a slow client does not hold the worker up.
_SHUTDOWN_TIMEOUT_S = 1.0


def probe_routes(registry: CollectorRegistry, *, health: Check, readiness: Check) -> list[web.RouteDef]:
    """GET (and HEAD) routes for ``/metrics``, ``/healthz`` and ``/readyz``."""
    return [
        web.get("/metrics", metrics_handler(registry)),
        web.get("/healthz", checks_handler(health)),
        web.get("/readyz", checks_handler(readiness)),
    ]


def metrics_handler(registry: CollectorRegistry) -> Handler:
    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        headers = {"Content-Type": content_type}
        if gzip_accepted(request.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    return metrics


def checks_handler(check: Check) -> Handler:
    async def checks(_: web.Request) -> web.Response:
        results = check()
        ok = all(results.values())
        body = orjson.dumps({"status": "ok" if ok else "unavailable", "checks": results})
        return web.Response(body=body, status=200 if ok else 503, content_type="application/json")

    return checks


@web.middleware
async def _probes_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Nothing but the three read-only endpoints: any other method is refused whatever the path,
    # and a path that only resolves after dot-segment normalisation is not one of them.
    if request.method not in ("GET", "HEAD"):
        return web.Response(status=405, text="method not allowed\n", headers={"Allow": "GET, HEAD"})
    if request.raw_path.split("?", 1)[0] != request.path:
        return web.Response(status=404, text="not found\n")
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return web.Response(status=404, text="not found\n")


class HealthServer:
    """The probe and metrics server of ``run``; serves nothing else."""

    def __init__(self, registry: CollectorRegistry, *, health: Check, readiness: Check,
                 host: str, port: int) -> None:
        app = web.Application(middlewares=[_probes_only])
        app.add_routes(probe_routes(registry, health=health, readiness=readiness))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
                                     logger=_request_errors)
        self._host = host
        self._port = port
        self._started = False

    @property
    def port(self) -> int:
        """The bound port (useful when configured as an ephemeral port)."""
        for address in self._runner.addresses:
            return int(address[1])
        return self._port

    async def start(self) -> None:
        await self._runner.setup()
        self._started = True
        await web.TCPSite(self._runner, self._host, self._port).start()
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self._host, self.port)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._runner.cleanup()
