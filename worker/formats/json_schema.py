"""JSON documents checked against a registered JSON Schema (jsonschema), and the output schema:
the input's schema with ``entities`` and ``ner`` added to its properties."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson

from worker.formats.codec import ADDED, InvalidPayload, SchemaProblem
from worker.formats.registry import RegisteredSchema

_JSON_TYPES = {"string": "string", "int": "integer", "long": "integer", "double": "number"}


class JsonSchemaCodec:
    message_indexes = b""

    def __init__(self, schema: RegisteredSchema) -> None:
        try:
            self._schema = orjson.loads(schema.text)
        except orjson.JSONDecodeError as exc:
            raise SchemaProblem(f"the registered JSON Schema is not JSON: {exc}") from exc
        if not isinstance(self._schema, dict):
            raise SchemaProblem("the registered JSON Schema is not an object")
        validator_class = jsonschema.validators.validator_for(self._schema)
        try:
            validator_class.check_schema(self._schema)
        except jsonschema.SchemaError as exc:
            raise SchemaProblem(f"the registered JSON Schema is not valid: {exc.message}") from exc
        self._validator = validator_class(self._schema)

    @property
    def record_name(self) -> str:
        return str(self._schema.get("title", "record"))

    def decode(self, payload: bytes) -> dict[str, Any]:
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise InvalidPayload(f"the payload is not JSON: {exc}") from exc
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(record))
        if error is not None:
            where = "/".join(map(str, error.absolute_path)) or "the document"
            raise InvalidPayload(f"the JSON does not match its schema at {where}: {error.message}")
        if not isinstance(record, dict):
            raise InvalidPayload("the JSON document is not an object")
        return record

    def encode(self, record: dict[str, Any]) -> bytes:
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(record))
        if error is not None:
            raise InvalidPayload(f"the output does not match the output schema: {error.message}")
        return orjson.dumps(record)

    def output_schema(self) -> RegisteredSchema:
        properties = self._schema.get("properties", {})
        ADDED.check_free(set(properties), "the JSON Schema")
        entity = _object(ADDED.entity)
        ner = {
            "type": "object",
            "properties": {"model": {"type": "string"}, "source": _object(ADDED.ner_source),
                           "timings": _object(ADDED.ner_timings)},
            "required": ["model", "source", "timings"],
        }
        extended = dict(self._schema, properties={
            **properties, ADDED.entities: {"type": "array", "items": entity}, ADDED.ner: ner,
        })
        return RegisteredSchema("JSON", orjson.dumps(extended).decode())


def _object(spec: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": _JSON_TYPES[kind]} for name, kind in spec},
        "required": [name for name, _ in spec],
    }
