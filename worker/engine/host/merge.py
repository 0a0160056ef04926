"""Requests from many clients wait here; those that arrived together leave as one engine batch.

A batch leaves when the engine has a free slot and either its token budget is full or its
oldest request has waited ``max_wait_s``: a request that waited for a slot longer than that
leaves at once with whatever queued behind it. A request over the budget leaves alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Reply = Callable[[int, bytes], None]
"""Sends one frame (kind, payload) back to the client that asked; a no-op once it hung up."""


@dataclass(frozen=True, slots=True)
class Request:
    lengths: npt.NDArray[np.int32]
    ids: npt.NDArray[np.int32]
    reply: Reply
    arrived: float

    @property
    def tokens(self) -> int:
        return int(self.ids.size)

    def windows(self) -> list[list[int]]:
        """The request's token id windows (the form every engine takes)."""
        flat: list[int] = self.ids.tolist()
        bounds = np.cumsum(self.lengths).tolist()
        return [flat[end - length : end] for end, length in zip(bounds, self.lengths.tolist(), strict=True)]


class Merger:
    def __init__(self, max_tokens: int, max_wait_s: float) -> None:
        if max_tokens < 1 or max_wait_s < 0:
            raise ValueError("the merge budget must be at least one token and the wait not negative")
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self._waiting: deque[Request] = deque()
        self._waiting_tokens = 0
        self._arrived = asyncio.Event()

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, request: Request) -> None:
        self._waiting.append(request)
        self._waiting_tokens += request.tokens
        self._arrived.set()

    async def next_batch(self) -> list[Request]:
        """The next batch, oldest request first; waits for the first request and then at most
        until that request has waited ``max_wait_s``."""
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        loop = asyncio.get_running_loop()
        deadline = self._waiting[0].arrived + self.max_wait_s
        while self._waiting_tokens < self.max_tokens and (remaining := deadline - loop.time()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self._take()

    def _take(self) -> list[Request]:
        batch = [self._waiting.popleft()]
        tokens = batch[0].tokens
        while self._waiting and tokens + self._waiting[0].tokens <= self.max_tokens:
            tokens += self._waiting[0].tokens
            batch.append(self._waiting.popleft())
        self._waiting_tokens -= tokens
        return batch

    def drain(self) -> list[Request]:
        """Every waiting request, taken out (at shutdown, to be answered with an error)."""
        left = list(self._waiting)
        self._waiting.clear()
        self._waiting_tokens = 0
        return left
