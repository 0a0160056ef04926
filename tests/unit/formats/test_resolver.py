"""The schema resolver's rules, with a fake registry client: what is cached, what is rejected with
which reason, and that an unreachable registry holds records instead of rejecting them."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest

from tests.unit.formats.test_codecs import AVRO, avro_bytes
from worker.formats.registry import (
    RegisteredSchema,
    RegistryUnavailable,
    SchemaRefused,
    SchemaRegistryClient,
    UnknownSchema,
)
from worker.formats.resolver import RecordRejected, SchemaResolver, cache_for, cache_key
from worker.formats.wire import frame
from worker.records import Document, ParseOptions, Rejection, parse_value
from worker.settings import Settings

AVRO_SCHEMA = RegisteredSchema("AVRO", orjson.dumps(AVRO).decode())


class FakeRegistry(SchemaRegistryClient):
    """Answers from a dict; ``down`` requests fail as an unreachable registry would."""

    def __init__(self, schemas: dict[int, RegisteredSchema], *, down: int = 0, refuse: bool = False) -> None:
        super().__init__("http://fake")
        self.schemas = schemas
        self.down = down
        self.refuse = refuse
        self.lookups: list[int] = []
        self.registered: list[tuple[str, RegisteredSchema]] = []

    async def schema_by_id(self, schema_id: int) -> RegisteredSchema:
        self.lookups.append(schema_id)
        if self.down:
            self.down -= 1
            raise RegistryUnavailable("connection refused")
        if schema_id not in self.schemas:
            raise UnknownSchema(f"HTTP 404 no schema {schema_id}")
        return self.schemas[schema_id]

    async def register(self, subject: str, schema: RegisteredSchema) -> int:
        if self.refuse:
            raise SchemaRefused("HTTP 409 incompatible")
        self.registered.append((subject, schema))
        return 100 + len(self.registered)


def resolver(client: FakeRegistry, *, json_output: bool = True, strategy: Any = "topic",
             url: str = "") -> SchemaResolver:
    return SchemaResolver(client, "avro", json_output=json_output, output_topic="ner.output",
                          subject_strategy=strategy, registry_url=url or f"http://fake/{id(client)}")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def record(schema_id: int = 1, text: str = "Ada Lovelace") -> bytes:
    return frame(schema_id, avro_bytes(AVRO, {"id": 1, "text": text, "blob": b"\x01"}))


def test_a_schema_is_fetched_once_and_decodes_every_record_that_names_it() -> None:
    client = FakeRegistry({1: AVRO_SCHEMA})
    subject = resolver(client)
    assert run(subject.resolve([record(), record(text="Grace"), None, b"not wire format"]))
    assert run(subject.resolve([record()]))
    assert client.lookups == [1]
    assert subject.cache.decode(record(text="Grace")).record == {"id": 1, "text": "Grace", "blob": "\x01"}


def test_an_unknown_id_rejects_its_records_as_unknown_schema_and_is_not_asked_again() -> None:
    client = FakeRegistry({})
    subject = resolver(client)
    run(subject.resolve([record(7), record(7)]))
    with pytest.raises(RecordRejected) as rejected:
        subject.cache.decode(record(7))
    assert rejected.value.reason == "unknown_schema"
    run(subject.resolve([record(7)]))
    assert client.lookups == [7]


def test_bytes_that_do_not_match_the_schema_are_invalid_avro() -> None:
    subject = resolver(FakeRegistry({1: AVRO_SCHEMA}))
    bad = record()[:-4]
    run(subject.resolve([bad]))
    with pytest.raises(RecordRejected) as rejected:
        subject.cache.decode(bad)
    assert rejected.value.reason == "invalid_avro"


def test_a_schema_of_another_type_is_invalid_for_the_format() -> None:
    subject = resolver(FakeRegistry({1: RegisteredSchema("PROTOBUF", 'syntax = "proto3"; message X {}')}))
    run(subject.resolve([record()]))
    with pytest.raises(RecordRejected, match="PROTOBUF schema, not AVRO") as rejected:
        subject.cache.decode(record())
    assert rejected.value.reason == "invalid_avro"


def test_an_unreachable_registry_holds_the_records_and_reports_itself_until_it_answers() -> None:
    client = FakeRegistry({1: AVRO_SCHEMA}, down=2)
    subject = resolver(client)
    states: list[bool] = []

    async def scenario() -> bool:
        return await subject.resolve([record()], on_wait=lambda: states.append(subject.reachable))

    assert run(scenario())
    assert states == [False, False]  # not ready while waiting
    assert subject.reachable
    assert client.lookups == [1, 1, 1]
    assert subject.cache.decode(record()).record["text"] == "Ada Lovelace"


def test_a_stop_while_the_registry_is_unreachable_returns_without_a_verdict() -> None:
    client = FakeRegistry({1: AVRO_SCHEMA}, down=10**6)
    subject = resolver(client)

    async def scenario() -> bool:
        stopping = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stopping.set)
        return await subject.resolve([record()], stopping)

    assert run(scenario()) is False
    assert not subject.reachable
    assert (1, ()) not in subject.cache.entries  # nothing was decided about the record


@pytest.mark.parametrize(("strategy", "subject_name"), [
    ("topic", "ner.output-value"), ("record", "demo.Doc"), ("topic-record", "ner.output-demo.Doc"),
])
def test_the_output_schema_is_registered_once_under_the_strategys_subject(strategy: str, subject_name: str) -> None:
    client = FakeRegistry({1: AVRO_SCHEMA})
    subject = resolver(client, json_output=False, strategy=strategy)
    run(subject.resolve([record(), record()]))
    assert [name for name, _ in client.registered] == [subject_name]
    decoded = subject.cache.decode(record())
    body = {**decoded.record, "entities": [], "ner": None}
    assert subject.cache.encode(decoded.schema, body)[:5] == frame(101, b"")


def test_a_refused_output_schema_rejects_the_records_with_their_own_reason() -> None:
    subject = resolver(FakeRegistry({1: AVRO_SCHEMA}, refuse=True), json_output=False)
    run(subject.resolve([record()]))
    with pytest.raises(RecordRejected, match="incompatible") as rejected:
        subject.cache.decode(record())
    assert rejected.value.reason == "output_schema_rejected"


def test_parse_value_finds_the_text_in_the_decoded_record() -> None:
    url = "http://fake/parse"
    subject = resolver(FakeRegistry({1: AVRO_SCHEMA}), url=url)
    settings = Settings(input_format="avro", schema_registry_url=url)
    options = ParseOptions.from_settings(settings)
    missing = dataclasses.replace(options, text_field="body.text")
    run(subject.resolve([record(), record(9)]))
    parsed = parse_value(record(), options)
    assert isinstance(parsed, Document) and parsed.text == "Ada Lovelace" and parsed.schema == (1, ())
    unknown = cache_for(cache_key(settings)).entries[(9, ())].message
    assert parse_value(record(9), options) == Rejection("unknown_schema", unknown)
    assert parse_value(record(), missing) == Rejection("missing_text", "the object has no field 'body.text'")
    not_framed = parse_value(b"\x01garbage", options)
    assert isinstance(not_framed, Rejection) and not_framed.reason == "invalid_avro"


def test_every_reason_of_the_registry_formats_is_in_the_dead_letter_schema() -> None:
    import json
    from pathlib import Path

    from worker.formats import resolver as module

    schema = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "dead-letter.schema.json").read_text())
    allowed = set(schema["properties"]["ner.error.reason"]["enum"])
    reasons = {module.UNKNOWN_SCHEMA, module.INVALID_SCHEMA, module.OUTPUT_SCHEMA_REJECTED,
               module.OUTPUT_ENCODING_FAILED, *module.INVALID_PAYLOAD.values()}
    assert reasons <= allowed, reasons - allowed
