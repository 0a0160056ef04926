"""Exponential backoff, written once for every loop that waits and tries again.

Used for the broker connection at start-up, transactional producers, the remote engine (start-up
and requests) and engine batches. The delay doubles from ``base_s`` up to ``max_s``; with
``jitter`` half of it is random, so that many workers restarted together do not retry in step.
A ``deadline_s`` bounds the whole wait: the last sleep is cut so that the last attempt falls on
the deadline rather than after it.
"""

from __future__ import annotations

import asyncio
import random
import time


def backoff_delay(attempt: int, base_s: float, max_s: float, *, jitter: bool = False,
                  retry_after: float | None = None) -> float:
    """The delay before retry number ``attempt + 1`` (attempt 0 is the first failure).

    At least ``retry_after`` (a server's Retry-After) when it is given, and never more than ``max_s``.
    """
    ceiling = min(max_s, base_s * 2.0**attempt)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2) if jitter else ceiling
    return min(max_s, max(delay, retry_after)) if retry_after is not None else delay


class Backoff:
    """The state of one retry loop: how many attempts failed and how long is left."""

    def __init__(self, base_s: float = 0.5, max_s: float = 5.0, *, deadline_s: float | None = None,
                 jitter: bool = False) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.jitter = jitter
        self.failures = 0
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s

    def remaining(self) -> float:
        """Seconds left before the deadline (infinite without one)."""
        return float("inf") if self._deadline is None else self._deadline - time.monotonic()

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count one more failure and return the wait before the next attempt, cut at the deadline."""
        delay = backoff_delay(self.failures, self.base_s, self.max_s, jitter=self.jitter, retry_after=retry_after)
        self.failures += 1
        return max(0.0, min(delay, self.remaining()))

    def exhausted(self, upcoming_delay: float = 0.0) -> bool:
        """True when waiting ``upcoming_delay`` more would pass the deadline (or it has passed)."""
        return self.remaining() - upcoming_delay <= 0

    async def wait(self, retry_after: float | None = None) -> float:
        """Sleep before the next attempt; returns the seconds slept."""
        delay = self.next_delay(retry_after)
        await asyncio.sleep(delay)
        return delay
