"""What every schema format provides, and the fields the worker adds to the output schema.

A codec is made from a registered schema (and, for Protobuf, the message the record names). It
decodes a payload into a plain record (the decoded object the text is looked up in), encodes
one, and derives the output schema: the input's schema with ``entities`` and ``ner`` added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from worker.formats.registry import RegisteredSchema


class InvalidPayload(ValueError):
    """The payload does not match its schema."""


class SchemaProblem(ValueError):
    """The registered schema cannot be used (does not parse, or cannot take the added fields)."""


class Codec(Protocol):
    @property
    def record_name(self) -> str:
        """The fully qualified record (Avro), message (Protobuf) or title (JSON Schema) name."""

    @property
    def message_indexes(self) -> bytes:
        """What goes between the schema id and the payload (Protobuf's message indexes)."""

    def decode(self, payload: bytes) -> dict[str, Any]: ...

    def encode(self, record: dict[str, Any]) -> bytes: ...

    def output_schema(self) -> RegisteredSchema: ...


@dataclass(frozen=True, slots=True)
class AddedFields:
    """The fields the output adds to the input's schema, described once; each codec writes them
    in its own schema language. Types are named as in Avro."""

    entities: str = "entities"
    ner: str = "ner"
    entity: tuple[tuple[str, str], ...] = (
        ("label", "string"), ("text", "string"), ("start", "int"), ("end", "int"), ("score", "double"),
    )
    ner_source: tuple[tuple[str, str], ...] = (("topic", "string"), ("partition", "int"), ("offset", "long"))
    ner_timings: tuple[tuple[str, str], ...] = (("engine_ms", "double"),)

    def check_free(self, existing: set[str], where: str) -> None:
        taken = sorted(existing & {self.entities, self.ner})
        if taken:
            raise SchemaProblem(f"{where} already has the field(s) {', '.join(taken)} the output adds")


ADDED = AddedFields()
