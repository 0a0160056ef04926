"""A one-line progress bar on stderr: documents, rate, percent and ETA (by input bytes).

Drawn only on a terminal, at most a few times a second; silent otherwise. Messages about bad
lines are printed above it (``note``) so that the two never garble each other.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

_REDRAW_S = 0.2
_BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def progress_line(*, documents: int, errors: int, done_bytes: int, total_bytes: int | None,
                  elapsed_s: float, rate_bytes_s: float, rate_docs_s: float) -> str:
    """The text of the bar (pure, so it is testable)."""
    parts: list[str] = []
    if total_bytes:
        fraction = min(1.0, done_bytes / total_bytes)
        filled = int(fraction * _BAR_WIDTH)
        parts.append(f"{fraction * 100:3.0f}% |{'#' * filled}{'.' * (_BAR_WIDTH - filled)}|")
    parts.append(f"{documents:,} docs")
    if errors:
        parts.append(f"{errors:,} bad")
    parts.append(f"{rate_docs_s:,.1f} docs/s")
    if total_bytes and rate_bytes_s > 0:
        parts.append(f"ETA {format_duration(max(0, total_bytes - done_bytes) / rate_bytes_s)}")
    else:
        parts.append(f"{format_duration(elapsed_s)} elapsed")
    return "  ".join(parts)


class Progress:
    def __init__(self, stream: TextIO, *, total_bytes: int | None, enabled: bool) -> None:
        self._stream = stream
        self._total = total_bytes
        self.enabled = enabled
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False
        self._skipped_bytes = 0
        self.documents = 0
        self.errors = 0
        self.done_bytes = 0

    def skipped(self, num_bytes: int) -> None:
        """Input already done by an earlier run: counts toward percent, not toward the rate."""
        self._skipped_bytes += num_bytes
        self.done_bytes += num_bytes

    def advance(self, *, documents: int, errors: int, num_bytes: int) -> None:
        self.documents += documents
        self.errors += errors
        self.done_bytes += num_bytes
        now = time.monotonic()
        if self.enabled and now - self._last_draw >= _REDRAW_S:
            self._last_draw = now
            self._draw(now)

    def note(self, message: str) -> None:
        """A message line (a bad input line, a warning) printed above the bar."""
        self._clear()
        print(message, file=self._stream, flush=True)
        if self.enabled and self._drawn:
            self._draw(time.monotonic())

    def finish(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-9)
        line = progress_line(
            documents=self.documents, errors=self.errors, done_bytes=self.done_bytes, total_bytes=self._total,
            elapsed_s=elapsed, rate_bytes_s=(self.done_bytes - self._skipped_bytes) / elapsed,
            rate_docs_s=(self.documents + self.errors) / elapsed,
        )
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._stream.write("\r" + line[:width].ljust(width))
        self._stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self.enabled and self._drawn:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self._stream.write("\r" + " " * width + "\r")
