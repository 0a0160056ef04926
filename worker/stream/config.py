"""The values the stream loop needs, read once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from worker.settings import OffsetReset, Settings
from worker.stream.health import STALL_LIMIT_S
from worker.stream.transactions import TRANSACTION_MARGIN_S


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    """Batch sizes, in-flight budgets, commit and drain timing of ``StreamRunner``."""

    max_batch_documents: int
    max_batch_tokens: int
    max_batch_wait_s: float
    max_concurrent_batches: int
    max_inflight_records: int
    max_inflight_tokens: int
    commit_interval_s: float
    drain_timeout_s: float
    engine_timeout_s: float
    """Longest wait for one engine call; a call that does not answer in time is a failed attempt."""
    progress_limit_s: float
    """``/healthz`` is false when work is pending and the publisher has not advanced for this long."""
    auto_offset_reset: OffsetReset
    """Where a rewound partition without a committed offset starts again."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RunnerConfig:
        return cls(
            max_batch_documents=settings.max_batch_documents,
            max_batch_tokens=settings.max_batch_tokens,
            max_batch_wait_s=settings.max_batch_wait_ms / 1000,
            max_concurrent_batches=settings.max_concurrent_batches,
            max_inflight_records=settings.max_inflight_records,
            max_inflight_tokens=settings.max_inflight_tokens,
            commit_interval_s=settings.commit_interval_ms / 1000,
            drain_timeout_s=settings.drain_timeout_s,
            engine_timeout_s=settings.engine_timeout_s,
            progress_limit_s=progress_limit_s(settings),
            auto_offset_reset=settings.auto_offset_reset,
        )


def progress_limit_s(settings: Settings) -> float:
    """How long the publisher may go without advancing while work is pending before ``/healthz`` fails.

    The longest wait that is not a fault is one engine call (``NER_ENGINE_TIMEOUT_S``) or, in
    exactly-once, one transaction (``NER_TRANSACTION_TIMEOUT_MS`` and the margin the worker gives
    it); the bound is the longer of the two plus the main loop's own stall limit.
    """
    longest_wait = settings.engine_timeout_s
    if settings.delivery == "exactly-once":
        longest_wait = max(longest_wait, settings.transaction_timeout_ms / 1000 + TRANSACTION_MARGIN_S)
    return longest_wait + STALL_LIMIT_S
