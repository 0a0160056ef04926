"""One stream process of a multi-process ``ner-worker run`` (started by its supervisor).

    python -m worker.stream.member --index I --status-file PATH --parent-pid PID [--engine-socket PATH]

The same ``NER_*`` settings as the supervisor; everything of ``run`` but the HTTP server: its
own Kafka consumer (an ordinary member of the group) and producers, parsing, tokenization,
decoding and publishing. Its engine is the engine host's at ``--engine-socket`` (a hosted
engine), or its own when there is none (the remote engine: the model runs elsewhere already).
It reports its health and readiness through ``--status-file`` and writes its metrics to
``PROMETHEUS_MULTIPROC_DIR``; SIGTERM drains and commits as ``run`` does, and so does losing its
supervisor. Exit status: that of ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path

from worker.engine import Engine
from worker.logs import configure_logging
from worker.settings import SettingsError, load_settings
from worker.stream.command import EXIT_CANNOT_START, EXIT_REFUSED, run_stream
from worker.stream.health import StreamStatus
from worker.stream.member_status import REPORT_INTERVAL_S, write_report

log = logging.getLogger("worker.stream.member")


class _NamedProcess(logging.Filter):
    """Begins every log line of this process with its number: the stream processes of a worker
    share one log stream."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._prefix = f"stream process {index}: "

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._prefix + str(record.msg)
        return True


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.stream.member", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=int, required=True, help="this process's number (for the logs)")
    parser.add_argument("--status-file", type=Path, required=True, help="where to report health and readiness")
    parser.add_argument("--parent-pid", type=int, required=True, help="stop (drain, commit) when this parent goes")
    parser.add_argument("--engine-socket", default="", help="the engine host's socket (none: an engine of its own)")
    return parser.parse_args(argv)


async def report_to_supervisor(status: StreamStatus, path: Path, parent_pid: int) -> None:
    """Rewrite the status file until cancelled; stop the process gracefully if the supervisor goes."""
    while True:
        write_report(path, status)
        if os.getppid() != parent_pid:
            log.warning("the supervisor (pid %d) has gone: stopping", parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)  # the worker's own stop: drain, commit, leave the group
            return
        await asyncio.sleep(REPORT_INTERVAL_S)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"stream process {arguments.index}: bad configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json_lines=settings.log_json)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NamedProcess(arguments.index))
    # The supervisor serves the probes and metrics of every process; this one serves none.
    settings = dataclasses.replace(settings, http_port=0, processes=1)
    engine: Engine | None = None
    if arguments.engine_socket:
        from worker.engine.host import HostedEngine

        try:
            engine = HostedEngine.from_settings(settings, arguments.engine_socket)
        except Exception as exc:  # the model's config cannot be read: as a failed engine load
            log.error("cannot start: NER_MODEL=%s: %s", settings.model, exc)
            return EXIT_CANNOT_START

    async def report(status: StreamStatus) -> None:
        await report_to_supervisor(status, arguments.status_file, arguments.parent_pid)

    return run_stream(settings, engine=engine, report=report, refused_status=EXIT_REFUSED)


if __name__ == "__main__":
    sys.exit(main())
