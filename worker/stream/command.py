"""Consume documents from NER_INPUT_TOPIC, annotate them and publish them to NER_OUTPUT_TOPIC
(records that cannot be annotated go to NER_DEAD_LETTER_TOPIC) until SIGTERM or SIGINT; then
drain the work in flight, commit and leave the consumer group.

With NER_PROCESSES above 1 this process supervises that many stream processes (each a member of
the consumer group) sharing one engine, and serves the metrics and probes of them all.

Every setting comes from the NER_* variables (ner-worker settings lists them).

Exit status: 0 after a stop (work a drain could not finish within NER_DRAIN_TIMEOUT_S stays
uncommitted, is read again by the partitions' next owner, and a warning says how much), 1 when
the stream stopped on a fault without committing unfinished records (the engine failed every
attempt; the broker denied a permission, the message naming the ACL; a stop that took longer
than NER_DRAIN_TIMEOUT_S + 10 s, which ends the process whatever still hangs; with several
processes also: the engine host died, or stream processes kept dying), 2 for bad settings, 3
when the worker cannot start (model cannot be loaded, broker unreachable, topic missing), 130
when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING

from worker.settings import Settings

if TYPE_CHECKING:  # the command's heavy imports wait until its settings are sound
    from worker.engine import Engine
    from worker.stream.app import StatusReport

HELP = "consume, annotate and publish until SIGTERM (settings from NER_* variables)"

EXIT_UNFINISHED = 1
EXIT_CANNOT_START = 3
EXIT_REFUSED = 4
"""A stream process's status (never the worker's) for a stop on a refusal that a restart would
meet again: its supervisor then stops the worker with ``EXIT_UNFINISHED`` rather than restart it."""

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def main(args: argparse.Namespace, settings: Settings) -> int:
    from worker.stream.processes import process_count

    count = process_count(settings)
    if count == 1:
        return run_stream(settings)  # no supervisor, no engine host: one process does it all
    from worker.stream.supervisor import Supervisor

    return asyncio.run(Supervisor(settings, count).run())


def run_stream(settings: Settings, *, engine: Engine | None = None, report: StatusReport | None = None,
               refused_status: int = EXIT_UNFINISHED) -> int:
    """Run one stream process to its end; its exit status (``refused_status`` for a stop on a
    refusal for good: a supervisor's stream processes tell it apart)."""
    from worker.stream.app import StartupError, run_worker  # heavy imports only once the settings are sound
    from worker.stream.runner import FatalStreamError

    try:
        asyncio.run(run_worker(settings, engine=engine, report=report))
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CANNOT_START
    except FatalStreamError as exc:
        log.error("stopped without committing unfinished records: %s", exc)
        return refused_status if exc.refused else EXIT_UNFINISHED
    except KeyboardInterrupt:
        return 130
    return 0
