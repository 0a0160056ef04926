"""What travels from the runner to a publisher: where a record came from, what became of it, and
the record to write for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from worker.records import Document, Rejection
from worker.stream.offsets import PartitionProgress
from worker.text.decode import Entity


@dataclass(slots=True)
class SourceRecord:
    """Where an input record came from, and what must travel with it to the output."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    progress: PartitionProgress


@dataclass(slots=True)
class Annotated:
    """A record ready to publish: its document and entities, with the ``ner`` block."""

    document: Document
    entities: list[Entity]
    ner: dict[str, Any]


Outcome = Annotated | Rejection


@dataclass(slots=True)
class Outgoing:
    """One record to write, and what to do once it is safely written."""

    topic: str
    value: bytes | None
    key: bytes | None
    partition: int
    """-1: let the producer hash the key."""
    headers: list[tuple[str, bytes]]
    source: SourceRecord
    on_written: Callable[[], None]
