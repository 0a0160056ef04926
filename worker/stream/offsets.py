"""Which offsets may be committed: only those below the first record not yet acknowledged.

Records of a partition are tracked in the order they are read; the broker's acknowledgements
(of an output or a dead letter) may come back in any order. The committable position of a
partition is the offset of its oldest unacknowledged record, or one past the newest record
when all are acknowledged, so a commit never skips an unprocessed record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition


class PartitionProgress:
    """Offsets of one partition read and not yet committable."""

    __slots__ = ("_acked", "_next", "_pending", "acknowledged", "committed", "detached")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._acked: set[int] = set()
        self._next: int | None = None
        self.committed: int | None = None
        self.acknowledged = 0  # acknowledgements counted so far: whether the publisher advances
        # Set when the partition is revoked: late acknowledgements must not count any more.
        self.detached = False

    def track(self, offset: int) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} tracked out of order after {self._pending[-1]}")
        self._pending.append(offset)

    def ack(self, offset: int) -> None:
        if self.detached:
            return
        self.acknowledged += 1
        self._acked.add(offset)
        while self._pending and self._pending[0] in self._acked:
            done = self._pending.popleft()
            self._acked.discard(done)
            self._next = done + 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The position to commit if it moved since the last commit, else None."""
        if self._next is None or self._next == self.committed:
            return None
        return self._next


class OffsetTracker:
    """Progress of every assigned partition."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionProgress] = {}

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.setdefault(tp, PartitionProgress())

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            progress = self._partitions.pop(tp, None)
            if progress is not None:
                progress.detached = True

    def progress(self, tp: TopicPartition) -> PartitionProgress:
        try:
            return self._partitions[tp]
        except KeyError:
            raise KeyError(f"{tp} is not assigned") from None

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self._partitions

    def pending(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        chosen = self._partitions if partitions is None else partitions
        return sum(self._partitions[tp].pending for tp in chosen if tp in self._partitions)

    def acknowledged(self) -> int:
        """Acknowledgements of the assigned partitions so far; it changes whenever one comes in."""
        return sum(p.acknowledged for p in self._partitions.values())

    def committable(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        chosen = list(self._partitions) if partitions is None else partitions
        offsets: dict[TopicPartition, int] = {}
        for tp in chosen:
            progress = self._partitions.get(tp)
            position = progress.committable() if progress else None
            if position is not None:
                offsets[tp] = position
        return offsets

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, position in offsets.items():
            progress = self._partitions.get(tp)
            if progress is not None:
                progress.committed = position

    def committed_positions(self) -> dict[TopicPartition, int | None]:
        return {tp: p.committed for tp, p in self._partitions.items()}
