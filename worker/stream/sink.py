"""Where finished batches go, and how a publisher asks for a partition to be read again."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition

from worker.stream.entries import Outcome, SourceRecord

Rewind = Callable[[TopicPartition, BaseException | None], Coroutine[Any, Any, None]]
"""Read a partition again from its last committed offset: (partition, the error that made it
necessary). A permission denied (an authorization error) stops the worker instead."""


class Sink(Protocol):
    """Where finished batches go: at-least-once ``Publisher`` or exactly-once ``TransactionalPublisher``."""

    fences_previous_owner: bool
    """True when ``partitions_assigned`` fences the partitions' previous owner (exactly-once):
    their start offset is then read again once it has returned."""

    async def publish(self, entries: Sequence[tuple[SourceRecord, Outcome]]) -> None: ...

    async def partitions_assigned(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def partitions_revoked(self, partitions: Sequence[TopicPartition]) -> None: ...

    async def close(self) -> None: ...


SinkFactory = Callable[[Rewind], Sink]
"""Builds the sink once its rewind target exists: the runner calls it with its own ``rewind``."""
