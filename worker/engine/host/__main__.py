"""The engine host program.

    python -m worker.engine.host --socket PATH [--max-batch-tokens N] [--max-wait-ms MS]
                                 [--max-in-flight N] [--drain-timeout-s S] [--parent-pid PID]

It loads the engine the ``NER_*`` settings name (``NER_ENGINE``, ``NER_MODEL``, ...), listens on
the Unix socket ``PATH`` and serves its clients until SIGTERM or SIGINT (or until its parent,
when ``--parent-pid`` names one, goes away); then it serves the clients still connected until
they hang up or the drain time runs out. Exit code 1: the engine failed to start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from worker.engine import create_engine
from worker.engine.host.server import EngineHost
from worker.logs import configure_logging
from worker.settings import Settings, SettingsError, load_settings
from worker.signals import stop_on_signals

log = logging.getLogger("worker.engine.host")

MERGED_BATCHES_PER_STREAM_BATCH = 4
"""Default merge budget, in stream batches (``NER_MAX_BATCH_TOKENS``): the batches of a few
processes go to the engine together."""
DEFAULT_MAX_WAIT_MS = 2.0
"""Requests are already batches: the host waits only long enough to catch those sent together."""


def default_in_flight(settings: Settings) -> int:
    """Merged batches the host keeps running. The vLLM engine spreads each one over its replicas and
    every replica queues its own share, so two per replica keep each replica's queue from running
    dry; another engine runs one batch at a time, and a second one only overlaps the copies."""
    return 2 * settings.engine_replicas if settings.engine == "vllm" else 2


def parse_arguments(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.engine.host", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", required=True, help="Unix socket to listen on (replaced if it exists)")
    parser.add_argument("--max-batch-tokens", type=int,
                        default=MERGED_BATCHES_PER_STREAM_BATCH * settings.max_batch_tokens,
                        help="most tokens of one merged engine batch (default: 4 x NER_MAX_BATCH_TOKENS)")
    parser.add_argument("--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS,
                        help="longest wait for more requests to merge with the oldest one")
    parser.add_argument("--max-in-flight", type=int, default=default_in_flight(settings),
                        help="engine batches running at once (default: 2, or 2 x NER_ENGINE_REPLICAS for vLLM)")
    parser.add_argument("--drain-timeout-s", type=float, default=30.0,
                        help="after a stop signal, how long connected clients are still served")
    parser.add_argument("--parent-pid", type=int, default=0, help="stop when this process is no longer the parent")
    arguments = parser.parse_args(argv)
    if arguments.max_batch_tokens < 1 or arguments.max_wait_ms < 0 or arguments.max_in_flight < 1:
        parser.error("--max-batch-tokens and --max-in-flight must be at least 1, --max-wait-ms not negative")
    return arguments


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("engine host: the parent process %d has gone; stopping", parent_pid)
            stop.set()
        await asyncio.sleep(0.5)


async def serve(arguments: argparse.Namespace, settings: Settings) -> None:
    host = EngineHost(create_engine(settings), arguments.socket, max_batch_tokens=arguments.max_batch_tokens,
                      max_wait_s=arguments.max_wait_ms / 1000, max_in_flight=arguments.max_in_flight)
    stop = asyncio.Event()
    stop_on_signals(stop)
    watcher = asyncio.create_task(_watch_parent(arguments.parent_pid, stop)) if arguments.parent_pid else None
    try:
        await host.serve(stop, drain_timeout_s=arguments.drain_timeout_s)
    finally:
        if watcher is not None:
            watcher.cancel()


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"engine host: {exc}", file=sys.stderr)
        return 2
    arguments = parse_arguments(argv, settings)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    try:
        asyncio.run(serve(arguments, settings))
    except Exception:
        log.exception("engine host: the engine failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
