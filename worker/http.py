"""``/metrics``, ``/healthz`` and ``/readyz`` on a tiny asyncio HTTP/1.1 server.

It serves nothing else. Answering at all proves the event loop is responsive; ``/healthz``
also checks that the main loop made progress recently, and ``/readyz`` reports the checks
the worker supplies (engine loaded, group joined, broker reachable) as JSON.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Check = Callable[[], dict[str, bool]]
_MAX_REQUEST_LINE = 8192


class HealthServer:
    def __init__(self, registry: CollectorRegistry, *, health: Check, readiness: Check,
                 host: str, port: int) -> None:
        self._registry = registry
        self._health = health
        self._readiness = readiness
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as an ephemeral port)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port, limit=_MAX_REQUEST_LINE)
        log.info("serving /metrics, /healthz and /readyz on %s:%d", self._host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            # Drain the request headers; no endpoint reads a body.
            while await asyncio.wait_for(reader.readline(), timeout=5) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            method, path = (parts[0], parts[1].split("?")[0]) if len(parts) >= 2 else ("", "")
            status, content_type, body = self._route(method, path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (body if method != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # The worker is exiting with a request in flight (a probe): end quietly. A cancelled
            # handler task makes Python 3.11's stream callback log a spurious ERROR traceback.
            pass
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path in ("/healthz", "/readyz"):
            checks = self._health() if path == "/healthz" else self._readiness()
            ok = all(checks.values())
            body = orjson.dumps({"status": "ok" if ok else "unavailable", "checks": checks})
            return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain", b"not found\n"
