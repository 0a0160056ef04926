"""The loop of ``ner-worker annotate``: numbered lines in, annotated lines out, in input order.

Lines are parsed with the stream's own ``parse_value`` and annotated through the same
``Annotator`` (tokenizer, engine, decoder), and each output is built by the stream's
``output_value``, so a file and a topic give byte-for-byte the same entities. While the engine
scores one batch (in its own thread, or on a remote server), the next lines are parsed and
tokenized; up to ``NER_MAX_CONCURRENT_BATCHES`` batches are in flight, written in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from worker.annotator import Annotator, BatchResult, Prepared
from worker.offline.files import ResultFiles, error_record
from worker.offline.progress import Progress
from worker.output import OutputControls
from worker.records import Rejection, engine_share, interleave, ner_block, output_value
from worker.settings import Settings

_MAX_REPORTED = 20
"""Bad lines reported one by one on stderr; the errors file holds all of them."""


@dataclass(slots=True)
class Slot(Prepared):
    """One input line on its way through: the document and its windows, or why it has none."""

    line: int = field(kw_only=True)
    raw: bytes = field(kw_only=True)
    num_bytes: int = field(kw_only=True)


@dataclass(slots=True)
class Summary:
    documents: int = 0
    errors: int = 0
    skipped_lines: int = 0
    tokens: int = 0
    entities: int = 0
    engine_seconds: float = 0.0
    seconds: float = 0.0
    last_line: int = 0
    """The last input line written (to the output or the errors file)."""
    by_reason: dict[str, int] = field(default_factory=dict)


class OfflineAnnotation:
    def __init__(self, annotator: Annotator, settings: Settings, files: ResultFiles, progress: Progress, *,
                 input_name: str, errors_name: str | None, report: Callable[[str], None] | None = None) -> None:
        self.annotator = annotator
        self.settings = settings
        self.files = files
        self.progress = progress
        self.input_name = input_name
        self.errors_name = errors_name
        self.report = report if report is not None else progress.note
        self.summary = Summary()
        self.output_controls = OutputControls.from_settings(settings)

    async def run(self, lines: Iterable[tuple[int, bytes, int]], *, skip_through: int = 0) -> Summary:
        """Annotate every line after ``skip_through``. Raises ``EngineError`` after writing all earlier lines."""
        started = time.perf_counter()
        pending: deque[tuple[list[Slot], asyncio.Task[BatchResult]]] = deque()
        try:
            for group in self._groups(lines, skip_through):
                for batch in self._batches(self._prepare(group)):
                    documents = [slot.encoded for slot in batch if slot.encoded is not None]
                    pending.append((batch, asyncio.create_task(self.annotator.annotate_encoded(documents))))
                    await asyncio.sleep(0)  # let the batch reach the engine before the next is tokenized
                    while len(pending) > self.settings.max_concurrent_batches:
                        self._write(*await self._next(pending))
            while pending:
                self._write(*await self._next(pending))
        finally:
            for _, task in pending:
                task.cancel()
            self.files.flush()
            self.summary.seconds = time.perf_counter() - started
        return self.summary

    @staticmethod
    async def _next(pending: deque[tuple[list[Slot], asyncio.Task[BatchResult]]]) -> tuple[list[Slot], BatchResult]:
        batch, task = pending[0]
        result = await task
        pending.popleft()
        return batch, result

    def _groups(self, lines: Iterable[tuple[int, bytes, int]], skip_through: int) -> Iterator[list[Slot]]:
        group: list[Slot] = []
        for number, raw, num_bytes in lines:
            if number <= skip_through:
                self.summary.skipped_lines += 1
                self.progress.skipped(num_bytes)
                continue
            group.append(Slot(line=number, raw=raw, num_bytes=num_bytes))
            if len(group) >= self.settings.max_batch_documents:
                yield group
                group = []
        if group:
            yield group

    def _prepare(self, group: list[Slot]) -> list[Slot]:
        """Parse every line and tokenize the valid ones in one tokenizer call."""
        self.annotator.prepare(group, lambda slot: slot.raw)
        return group

    def _batches(self, slots: list[Slot]) -> Iterator[list[Slot]]:
        """Consecutive slots within the token budget (a longer document goes alone)."""
        batch: list[Slot] = []
        tokens = 0
        for slot in slots:
            if batch and tokens + slot.tokens > self.settings.max_batch_tokens:
                yield batch
                batch, tokens = [], 0
            batch.append(slot)
            tokens += slot.tokens
        if batch:
            yield batch

    def _write(self, batch: list[Slot], result: BatchResult) -> None:
        outcomes = interleave([slot.rejection if slot.rejection is not None else slot for slot in batch],
                              result.entities)
        documents = errors = 0
        for slot, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Rejection):
                self._bad_line(slot, outcome)
                errors += 1
            else:
                assert slot.document is not None
                ner = ner_block(self.annotator.model_name, {"file": self.input_name, "line": slot.line},
                                document_engine_seconds=engine_share(result.engine_seconds, slot.tokens, result.tokens))
                self.files.document(output_value(slot.document, outcome, ner=ner, controls=self.output_controls))
                self.summary.entities += len(outcome)
                documents += 1
            self.summary.last_line = slot.line
        self.files.flush()
        self.summary.documents += documents
        self.summary.tokens += result.tokens
        self.summary.engine_seconds += result.engine_seconds
        self.progress.advance(documents=documents, errors=errors, num_bytes=sum(s.num_bytes for s in batch))

    def _bad_line(self, slot: Slot, rejection: Rejection) -> None:
        self.files.error(error_record(self.input_name, slot.line, rejection.reason, rejection.message, slot.raw))
        self.summary.errors += 1
        self.summary.by_reason[rejection.reason] = self.summary.by_reason.get(rejection.reason, 0) + 1
        # Without an errors file stderr is the only record, so every bad line is reported there.
        if self.errors_name is None or self.summary.errors <= _MAX_REPORTED:
            self.report(f"{self.input_name}:{slot.line}: {rejection.reason}: {rejection.message}")
        if self.errors_name is not None and self.summary.errors == _MAX_REPORTED:
            self.report(f"{self.input_name}: further bad lines are only in {self.errors_name}")
