"""Annotate a file: JSONL (one JSON object a line) or plain text (one document a line), from a
file or stdin ("-"), into annotated JSONL with the stream's output contract; ner.source
says which input file and line each document came from.

Bad lines are reported on stderr with their line number and written to an errors file
(OUTPUT.errors.jsonl), and the run goes on. Re-running with the same OUTPUT resumes after the
last line already written (a record cut short by a crash is dropped and redone); --overwrite
starts again. Engine and decoding settings come from the NER_* variables (ner-worker settings).

Exit status: 0 when every line was written or reported, 1 when the engine failed (re-run to
resume), 2 for bad arguments or settings, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from worker.offline.run import Summary
    from worker.settings import Settings

# Measured on the shipped model with 2 CPU cores: 1024-document batches annotate 3-5x faster
# than 64-document batches (per-batch overhead dominates a small model on a CPU).
OFFLINE_BATCH_DOCUMENTS = 1024
OFFLINE_BATCH_TOKENS = 32768

HELP = "annotate a JSONL or text file (or stdin) into annotated JSONL; resumable"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("input", metavar="INPUT", help='input file, one document a line; "-" reads stdin')
    parser.add_argument("-o", "--output", metavar="OUTPUT", help="annotated JSONL (default: stdout, not resumable)")
    parser.add_argument("--format", choices=("json", "text"), default=None,
                        help="json: one JSON object a line; text: each line is the text (default: NER_INPUT_FORMAT)")
    parser.add_argument("--errors", metavar="FILE",
                        help="bad lines as JSONL (default: OUTPUT.errors.jsonl; with stdout output: stderr only)")
    parser.add_argument("--overwrite", action="store_true", help="start again instead of resuming an existing OUTPUT")
    parser.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                        help="progress bar on stderr (auto: only when stderr is a terminal)")
    parser.add_argument("--batch-documents", type=int, metavar="N",
                        help=f"documents per engine batch (default: NER_MAX_BATCH_DOCUMENTS if set, else "
                             f"{OFFLINE_BATCH_DOCUMENTS}: a file wants throughput more than latency)")
    parser.add_argument("--batch-tokens", type=int, metavar="N",
                        help=f"tokens per engine batch (default: NER_MAX_BATCH_TOKENS if set, "
                             f"else {OFFLINE_BATCH_TOKENS})")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line at the end")


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.format:
        settings = dataclasses.replace(settings, input_format=args.format)
    if settings.input_format not in ("json", "text"):
        print(f"ner-worker annotate: NER_INPUT_FORMAT={settings.input_format} is for Kafka records; a file has "
              "JSON or text lines (pass --format json or --format text)", file=sys.stderr)
        return 2
    settings = dataclasses.replace(
        settings,
        max_batch_documents=_batch_limit(args.batch_documents, settings, "max_batch_documents",
                                         OFFLINE_BATCH_DOCUMENTS),
        max_batch_tokens=_batch_limit(args.batch_tokens, settings, "max_batch_tokens", OFFLINE_BATCH_TOKENS),
    )
    if settings.max_batch_documents < 1 or settings.max_batch_tokens < 1:
        print("ner-worker annotate: --batch-documents and --batch-tokens must be positive", file=sys.stderr)
        return 2
    output = Path(args.output) if args.output and args.output != "-" else None
    errors = Path(args.errors) if args.errors else (Path(f"{output}.errors.jsonl") if output else None)
    problem = _check_paths(args.input, output, errors)
    if problem:
        print(f"ner-worker annotate: {problem}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_annotate(settings, args, output, errors))
    except KeyboardInterrupt:
        print("ner-worker annotate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _batch_limit(given: int | None, settings: Settings, name: str, offline_default: int) -> int:
    """The option if given, else the setting if the environment set it, else the offline default."""
    if given is not None:
        return given
    return int(getattr(settings, name)) if name in settings.set_by_environment else offline_default


def _check_paths(source: str, output: Path | None, errors: Path | None) -> str | None:
    if source != "-" and not Path(source).is_file():
        return f"no such input file: {source}"
    written = [p.resolve() for p in (output, errors) if p is not None]
    if source != "-" and Path(source).resolve() in written:
        return "the output and errors files must differ from the input"
    if len(written) == 2 and written[0] == written[1]:
        return "the output and the errors file must differ"
    return None


async def _annotate(settings: Settings, args: argparse.Namespace, output: Path | None, errors: Path | None) -> int:
    from worker.annotator import Annotator
    from worker.engine import EngineError
    from worker.offline.files import STDIN_NAME, ResultFiles, ResumeError, find_resume_point, input_size, numbered_lines
    from worker.offline.progress import Progress
    from worker.offline.run import OfflineAnnotation

    input_name = STDIN_NAME if args.input == "-" else args.input
    skip_through = 0
    if output is not None and not args.overwrite and (output.exists() or (errors is not None and errors.exists())):
        try:
            point = find_resume_point(output, errors, input_name=input_name)
        except ResumeError as exc:
            print(f"ner-worker annotate: cannot resume: {exc}", file=sys.stderr)
            return 2
        skip_through = point.last_line
        if skip_through or point.dropped_bytes:
            print(f"ner-worker annotate: resuming after line {skip_through:,} of {input_name}"
                  + (f" (dropped an incomplete last record of {point.dropped_bytes} bytes)" if point.dropped_bytes
                     else ""), file=sys.stderr)
    try:
        annotator = Annotator.from_settings(settings)
        await annotator.engine.start()
    except Exception as exc:  # any failure to load names the settings that chose the model and engine
        print(f"ner-worker annotate: cannot load NER_MODEL={settings.model} with NER_ENGINE={settings.engine}: {exc}",
              file=sys.stderr)
        return 2
    try:
        files = ResultFiles.open(output, errors, append=skip_through > 0 and not args.overwrite)
        source: IO[bytes] = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        await annotator.engine.close()
        print(f"ner-worker annotate: {exc}", file=sys.stderr)
        return 2
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    progress = Progress(sys.stderr, total_bytes=input_size(source), enabled=show)
    run = OfflineAnnotation(annotator, settings, files, progress, input_name=input_name,
                            errors_name=str(errors) if errors else None)
    try:
        summary = await run.run(numbered_lines(source), skip_through=skip_through)
    except (EngineError, OSError) as exc:
        progress.finish()
        what = "the engine failed" if isinstance(exc, EngineError) else "reading or writing failed"
        print(f"ner-worker annotate: {what} after line {run.summary.last_line:,}: {exc}\n"
              "  every earlier line is written; run the same command again to resume", file=sys.stderr)
        return 1
    finally:
        files.close()
        if source is not sys.stdin.buffer:
            source.close()
        await annotator.engine.close()
    progress.finish()
    if not args.quiet:
        print(_summary_line(summary, errors), file=sys.stderr)
    return 0


def _summary_line(summary: Summary, errors: Path | None) -> str:
    seconds = max(summary.seconds, 1e-9)
    parts = [f"annotated {summary.documents:,} documents ({summary.entities:,} entities)"]
    if summary.errors:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.by_reason.items()))
        parts.append(f"{summary.errors:,} bad lines ({reasons})" + (f" in {errors}" if errors else ""))
    if summary.skipped_lines:
        parts.append(f"{summary.skipped_lines:,} lines already done")
    rate = (summary.documents + summary.errors) / seconds
    parts.append(f"{summary.seconds:.2f}s: {rate:,.1f} docs/s, {summary.tokens / seconds:,.0f} tokens/s")
    return "ner-worker annotate: " + "; ".join(parts)
