"""Micro-batches: documents gather until a document count, a token budget or a wait runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")


@dataclass
class Batcher(Generic[Item]):
    max_documents: int
    max_tokens: int
    max_wait_s: float
    _items: list[Item] = field(default_factory=list)
    _tokens: list[int] = field(default_factory=list)
    _total_tokens: int = 0
    _opened_at: float | None = None

    def add(self, item: Item, tokens: int) -> None:
        if self._opened_at is None:
            self._opened_at = time.monotonic()
        self._items.append(item)
        self._tokens.append(tokens)
        self._total_tokens += tokens

    def __len__(self) -> int:
        return len(self._items)

    @property
    def tokens(self) -> int:
        return self._total_tokens

    def full(self) -> bool:
        return len(self._items) >= self.max_documents or self._total_tokens >= self.max_tokens

    def due(self, now: float | None = None) -> bool:
        """A batch is due when it is full or its oldest document has waited long enough."""
        if not self._items:
            return False
        if self.full():
            return True
        assert self._opened_at is not None
        return (time.monotonic() if now is None else now) - self._opened_at >= self.max_wait_s

    def seconds_until_due(self) -> float | None:
        if not self._items or self._opened_at is None:
            return None
        if self.full():
            return 0.0
        return max(0.0, self._opened_at + self.max_wait_s - time.monotonic())

    def take(self) -> list[Item]:
        """The next batch: up to the document and token limits, oldest first (never empty if any)."""
        count, tokens = 0, 0
        while count < len(self._items) and count < self.max_documents:
            if count and tokens + self._tokens[count] > self.max_tokens:
                break
            tokens += self._tokens[count]
            count += 1
        batch = self._items[:count]
        del self._items[:count]
        del self._tokens[:count]
        self._total_tokens -= tokens
        self._opened_at = time.monotonic() if self._items else None
        return batch

    def remove(self, keep: Callable[[Item], bool]) -> int:
        """Drop the items for which ``keep`` is false (their partition was revoked)."""
        kept = [(i, t) for i, t in zip(self._items, self._tokens, strict=False) if keep(i)]
        dropped = len(self._items) - len(kept)
        self._items = [i for i, _ in kept]
        self._tokens = [t for _, t in kept]
        self._total_tokens = sum(self._tokens)
        if not self._items:
            self._opened_at = None
        return dropped
