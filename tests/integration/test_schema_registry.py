"""The registry client and the schema resolver against the real schema registry the project starts
(tools/registry/registry-local.sh); outputs checked with confluent-kafka's own deserialiser."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.fixtures.ports import free_port
from tests.unit.formats.test_codecs import AVRO
from worker.formats.registry import (
    Reference,
    RegisteredSchema,
    RegistryUnavailable,
    SchemaRefused,
    SchemaRegistryClient,
    UnknownSchema,
)
from worker.formats.resolver import RecordRejected, SchemaResolver
from worker.formats.wire import frame, write_message_indexes

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def avro_schema(name: str) -> dict[str, Any]:
    return dict(AVRO, name=name)


def test_client_reads_and_registers_and_tells_unknown_from_refused_from_unreachable(schema_registry_url: str) -> None:
    async def scenario() -> None:
        client = SchemaRegistryClient(schema_registry_url)
        subject = unique("client") + "-value"
        schema = RegisteredSchema("AVRO", orjson.dumps(avro_schema(unique("Doc").replace("-", "_"))).decode())
        try:
            schema_id = await client.register(subject, schema)
            assert await client.register(subject, schema) == schema_id  # idempotent
            fetched = await client.schema_by_id(schema_id)
            assert fetched.schema_type == "AVRO" and orjson.loads(fetched.text) == orjson.loads(schema.text)
            assert (await client.subject_version(subject, 1)).text == fetched.text
            with pytest.raises(UnknownSchema):
                await client.schema_by_id(987_654_321)
            # BACKWARD compatibility (the tool's default) refuses a changed field type.
            changed = orjson.loads(schema.text)
            changed["fields"][0]["type"] = "string"
            with pytest.raises(SchemaRefused):
                await client.register(subject, RegisteredSchema("AVRO", orjson.dumps(changed).decode()))
        finally:
            await client.close()
        nobody = SchemaRegistryClient(f"http://127.0.0.1:{free_port()}/apis/ccompat/v7", timeout_s=2)
        with pytest.raises(RegistryUnavailable):
            await nobody.schema_by_id(1)
        await nobody.close()

    asyncio.run(scenario())


def test_avro_output_is_registered_under_the_topic_subject_and_decodes_with_confluents_deserializer(
        schema_registry_url: str) -> None:
    in_topic, out_topic = unique("reg-in"), unique("reg-out")
    confluent = ConfluentClient({"url": schema_registry_url})
    serializer = AvroSerializer(confluent, orjson.dumps(avro_schema("Doc")).decode())
    document = {"id": 42, "text": "Ada Lovelace met Charles Babbage in London.", "blob": b"\x00\xff"}
    value = serializer(document, SerializationContext(in_topic, MessageField.VALUE))
    assert value is not None
    entities = [{"label": "PER", "text": "Ada Lovelace", "start": 0, "end": 12, "score": 0.99}]
    ner = {"model": "tiny", "source": {"topic": in_topic, "partition": 0, "offset": 3}, "timings": {"engine_ms": 2.5}}

    async def scenario() -> bytes:
        resolver = SchemaResolver(SchemaRegistryClient(schema_registry_url), "avro", json_output=False,
                                  output_topic=out_topic, subject_strategy="topic", registry_url=schema_registry_url)
        try:
            assert await resolver.resolve([value])
        finally:
            await resolver.close()
        decoded = resolver.cache.decode(value)
        assert decoded.record == document
        return resolver.cache.encode(decoded.schema, {**decoded.record, "entities": entities, "ner": ner})

    output = asyncio.run(scenario())
    fresh = AvroDeserializer(ConfluentClient({"url": schema_registry_url}))  # fetches the writer schema by id
    assert fresh(output, SerializationContext(out_topic, MessageField.VALUE)) == {
        **document, "entities": entities, "ner": ner}
    latest = confluent.get_latest_version(f"{out_topic}-value")
    assert latest.schema_id == int.from_bytes(output[1:5], "big")
    assert [f["name"] for f in orjson.loads(latest.schema.schema_str)["fields"]][-2:] == ["entities", "ner"]


def test_protobuf_references_are_fetched_by_subject_and_version(schema_registry_url: str) -> None:
    package = unique("shared").replace("-", "_")
    common = f'syntax = "proto3";\npackage {package};\nmessage Author {{ string name = 1; }}\n'
    main = (f'syntax = "proto3";\npackage {package}.docs;\nimport "{package}/author.proto";\n'
            f"message Doc {{ string text = 1; {package}.Author author = 2; }}\n")

    async def scenario() -> dict[str, Any]:
        client = SchemaRegistryClient(schema_registry_url)
        common_subject = unique("author")
        await client.register(common_subject, RegisteredSchema("PROTOBUF", common))
        reference = Reference(f"{package}/author.proto", common_subject, 1)
        main_id = await client.register(unique("docs") + "-value",
                                        RegisteredSchema("PROTOBUF", main, (reference,)))
        resolver = SchemaResolver(client, "protobuf", json_output=True, output_topic="unused",
                                  subject_strategy="topic", registry_url=schema_registry_url)
        # Doc{text: "Ada", author: {name: "Byron"}}
        message = b"\x0a\x03Ada\x12\x07\x0a\x05Byron"
        value = frame(main_id, write_message_indexes((0,)) + message)
        unknown = frame(987_654_321, write_message_indexes((0,)) + message)
        try:
            assert await resolver.resolve([value, unknown])
        finally:
            await resolver.close()
        with pytest.raises(RecordRejected) as rejected:
            resolver.cache.decode(unknown)
        assert rejected.value.reason == "unknown_schema"
        return resolver.cache.decode(value).record

    assert asyncio.run(scenario()) == {"text": "Ada", "author": {"name": "Byron"}}


def test_json_schema_output_is_accepted_by_the_registry_and_decodes_with_confluents_deserializer(
        schema_registry_url: str) -> None:
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

    from tests.unit.formats.test_codecs import JSON_SCHEMA

    in_topic, out_topic = unique("json-in"), unique("json-out")
    confluent = ConfluentClient({"url": schema_registry_url})
    value = JSONSerializer(orjson.dumps(JSON_SCHEMA).decode(), confluent)(
        {"id": 1, "text": "Ada Lovelace"}, SerializationContext(in_topic, MessageField.VALUE))
    assert value is not None
    added = {"entities": [{"label": "PER", "text": "Ada Lovelace", "start": 0, "end": 12, "score": 0.9}],
             "ner": {"model": "tiny", "source": {"topic": in_topic, "partition": 0, "offset": 0},
                     "timings": {"engine_ms": 1.0}}}

    async def scenario() -> bytes:
        resolver = SchemaResolver(SchemaRegistryClient(schema_registry_url), "json-schema", json_output=False,
                                  output_topic=out_topic, subject_strategy="record", registry_url=schema_registry_url)
        try:
            assert await resolver.resolve([value])
        finally:
            await resolver.close()
        decoded = resolver.cache.decode(value)
        return resolver.cache.encode(decoded.schema, {**decoded.record, **added})

    output = asyncio.run(scenario())
    fresh = JSONDeserializer(None, schema_registry_client=ConfluentClient({"url": schema_registry_url}))
    assert fresh(output, SerializationContext(out_topic, MessageField.VALUE)) == {"id": 1, "text": "Ada Lovelace",
                                                                                 **added}
    # The record strategy names the subject after the schema's title.
    assert confluent.get_latest_version("Doc").schema_id == int.from_bytes(output[1:5], "big")
