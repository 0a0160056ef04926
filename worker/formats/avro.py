"""Avro records (fastavro), and the output schema: the writer's schema plus ``entities`` and ``ner``.

The added fields have defaults (an empty array, null), so the output schema is a backward
compatible evolution of the input's: readers of the input schema can read the outputs.
"""

from __future__ import annotations

import decimal
import io
from typing import Any

import fastavro
import orjson

from worker.formats.codec import ADDED, InvalidPayload, SchemaProblem
from worker.formats.registry import RegisteredSchema


class AvroCodec:
    message_indexes = b""

    def __init__(self, schema: RegisteredSchema) -> None:
        try:
            self._schema_json = orjson.loads(schema.text)
            self._parsed = fastavro.parse_schema(self._schema_json)
        except (orjson.JSONDecodeError, fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
            raise SchemaProblem(f"the registered Avro schema does not parse: {exc}") from exc
        if not isinstance(self._schema_json, dict) or self._schema_json.get("type") != "record":
            raise SchemaProblem("the registered Avro schema is not a record")

    @property
    def record_name(self) -> str:
        parsed: dict[str, Any] = self._parsed  # type: ignore[assignment]  # a record, checked above
        return str(parsed["name"])

    def decode(self, payload: bytes) -> dict[str, Any]:
        buffer = io.BytesIO(payload)
        try:
            record = fastavro.schemaless_reader(buffer, self._parsed, None)
        except Exception as exc:  # fastavro raises many kinds (EOFError, ValueError, UnicodeDecodeError, ...)
            raise InvalidPayload(f"the bytes do not match the Avro schema: {exc!r}") from exc
        if buffer.tell() != len(payload):
            raise InvalidPayload(f"{len(payload) - buffer.tell()} bytes are left over after the Avro record")
        assert isinstance(record, dict)
        return record

    def encode(self, record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self._parsed, record, strict_allow_default=True)
        return buffer.getvalue()

    def output_schema(self) -> RegisteredSchema:
        fields = self._schema_json.get("fields", [])
        ADDED.check_free({f["name"] for f in fields}, f"the Avro record {self.record_name}")
        # Names in a namespace of their own, so that they cannot clash with the input's types.
        namespace = "kafka_ner_worker"
        entity = {"type": "record", "name": "Entity", "namespace": namespace, "fields": _fields(ADDED.entity)}
        ner = {
            "type": "record", "name": "Ner", "namespace": namespace,
            "fields": [
                {"name": "model", "type": "string"},
                {"name": "source", "type": {"type": "record", "name": "Source", "fields": _fields(ADDED.ner_source)}},
                {"name": "timings", "type": {"type": "record", "name": "Timings",
                                             "fields": _fields(ADDED.ner_timings)}},
            ],
        }
        extended = dict(self._schema_json, fields=[
            *fields,
            {"name": ADDED.entities, "type": {"type": "array", "items": entity}, "default": []},
            {"name": ADDED.ner, "type": ["null", ner], "default": None},
        ])
        return RegisteredSchema("AVRO", orjson.dumps(extended).decode())


def _fields(spec: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"name": name, "type": kind} for name, kind in spec]


def json_safe(value: Any) -> Any:
    """A decoded Avro value with bytes as Avro's JSON encoding writes them (one character per
    byte) and decimals as strings, so that JSON output can carry it."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value
