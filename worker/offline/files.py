"""Files of ``ner-worker annotate``: numbered input lines, ordered output and errors, resuming.

Every result is written in input-line order, to the output (annotated documents) or to the
errors file (bad lines), and the output is flushed before an error record is written. So after
a crash the records on disk cover a prefix of the input: the highest line number found at the
end of either file is where a re-run resumes. A last line cut short by the crash is dropped.
"""

from __future__ import annotations

import base64
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

STDIN_NAME = "<stdin>"
_TAIL_CHUNK = 64 * 1024


class ResumeError(RuntimeError):
    """An existing output cannot be resumed safely; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    last_line: int
    """Input lines up to this one are already in the output or the errors file (0: none)."""
    dropped_bytes: int
    """Bytes of an incomplete last record removed from the files."""


def numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, int]]:
    """(1-based line number, line without its end-of-line, bytes consumed), for every line."""
    for number, raw in enumerate(stream, start=1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if line.endswith(b"\r"):  # files written on Windows
            line = line[:-1]
        yield number, line, len(raw)


def complete_last_record(path: Path) -> tuple[bytes | None, int]:
    """The last newline-terminated line of ``path`` and the size of the incomplete tail after it.

    Reads backwards from the end, so resuming a multi-gigabyte output costs a few reads.
    """
    with path.open("rb") as handle:
        tail, position = b"", path.stat().st_size
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            tail = handle.read(step) + tail
            last = tail.rfind(b"\n")
            if last >= 0 and tail.rfind(b"\n", 0, last) >= 0:
                break  # the whole last complete line is in ``tail``
    last = tail.rfind(b"\n")
    if last < 0:
        return None, len(tail)  # no complete line at all: ``tail`` is the whole file
    start = tail.rfind(b"\n", 0, last) + 1  # 0 when the record starts the file
    return tail[start:last], len(tail) - last - 1


def find_resume_point(output: Path, errors: Path | None, *, input_name: str) -> ResumePoint:
    """Where a re-run starts; truncates an incomplete last record in either file."""
    last_line, dropped = 0, 0
    for path, kind in ((output, "output"), (errors, "errors")):
        if path is None or not path.exists():
            continue
        record, incomplete = complete_last_record(path)
        if incomplete:
            with path.open("r+b") as handle:
                handle.truncate(path.stat().st_size - incomplete)
            dropped += incomplete
        if record is None:
            continue
        source_file, line = _record_position(record, kind, path)
        if source_file != input_name:
            raise ResumeError(
                f"{path} holds results for {source_file!r}, not {input_name!r}; "
                "pass --overwrite to start again, or another output"
            )
        last_line = max(last_line, line)
    return ResumePoint(last_line, dropped)


def _record_position(record: bytes, kind: str, path: Path) -> tuple[str, int]:
    try:
        body = orjson.loads(record)
        position = body["ner"]["source"] if kind == "output" else body
        source_file, line = position["file"], position["line"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        source_file, line = None, None
    if not isinstance(source_file, str) or not isinstance(line, int) or isinstance(line, bool):
        raise ResumeError(
            f"the last line of {path} is not a record written by 'ner-worker annotate' (no source file and line); "
            "pass --overwrite to start again, or another output"
        )
    return source_file, line


def error_record(input_name: str, line: int, reason: str, message: str, value: bytes) -> bytes:
    """One JSON line of the errors file: where, why, and the original line (text or base64)."""
    record: dict[str, Any] = {"file": input_name, "line": line, "reason": reason, "message": message}
    try:
        record["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        record["value_base64"] = base64.b64encode(value).decode("ascii")
    return orjson.dumps(record) + b"\n"


class ResultFiles:
    """The output and the errors file, written in line order (see the module note on crashes)."""

    def __init__(self, output: IO[bytes], errors: IO[bytes] | None, *, close_output: bool = True) -> None:
        self._output = output
        self._errors = errors
        self._close_output = close_output

    @classmethod
    def open(cls, output: Path | None, errors: Path | None, *, append: bool) -> ResultFiles:
        mode = "ab" if append else "wb"
        errors_file = errors.open(mode) if errors is not None else None
        if output is None:
            return cls(sys.stdout.buffer, errors_file, close_output=False)
        return cls(output.open(mode), errors_file)

    def document(self, value: bytes) -> None:
        self._output.write(value)
        self._output.write(b"\n")

    def error(self, record: bytes) -> None:
        if self._errors is None:
            return
        self._output.flush()  # everything before this line is on disk before its error record
        self._errors.write(record)
        self._errors.flush()

    def flush(self) -> None:
        self._output.flush()
        if self._errors is not None:
            self._errors.flush()

    def close(self) -> None:
        self.flush()
        if self._close_output:
            self._output.close()
        if self._errors is not None:
            self._errors.close()


def input_size(stream: IO[bytes]) -> int | None:
    """Bytes in a regular input file (for percent and ETA); None for pipes and terminals."""
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return status.st_size if stat.S_ISREG(status.st_mode) else None
