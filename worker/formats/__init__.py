"""Schema Registry formats: Avro, Protobuf and JSON Schema records in Confluent's wire format.

``resolver`` fetches writer schemas by id from the registry and registers output schemas;
``wire`` is the framing; ``avro``, ``protobuf`` and ``json_schema`` are the codecs (fastavro,
protobuf with protoc from grpcio-tools, jsonschema); ``registry`` is the REST client.
"""

from __future__ import annotations

from worker.formats.resolver import (
    Decoded,
    RecordRejected,
    SchemaKey,
    SchemaResolver,
    cache_for,
)

__all__ = ["Decoded", "RecordRejected", "SchemaKey", "SchemaResolver", "cache_for"]
