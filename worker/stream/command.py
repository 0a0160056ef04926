"""Consume documents from NER_INPUT_TOPIC, annotate them and publish them to NER_OUTPUT_TOPIC
(records that cannot be annotated go to NER_DEAD_LETTER_TOPIC) until SIGTERM or SIGINT; then
drain the work in flight, commit and leave the consumer group.

Every setting comes from the NER_* variables (ner-worker settings lists them).

Exit status: 0 after a clean stop, 1 when the stream stopped without committing unfinished
records (the engine failed every attempt; a stop whose drain did not finish within
NER_DRAIN_TIMEOUT_S; a stop that took longer than NER_DRAIN_TIMEOUT_S + 10 s, which ends the
process whatever still hangs), 2 for bad settings, 3 when the worker cannot start (model cannot
be loaded, broker unreachable, topic missing), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from worker.settings import Settings

HELP = "consume, annotate and publish until SIGTERM (settings from NER_* variables)"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def main(args: argparse.Namespace, settings: Settings) -> int:
    from worker.stream.app import StartupError, run_worker  # heavy imports only once the settings are sound
    from worker.stream.runner import FatalStreamError

    try:
        asyncio.run(run_worker(settings))
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        return 3
    except FatalStreamError as exc:
        log.error("stopped without committing unfinished records: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
