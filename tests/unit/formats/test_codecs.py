"""The Avro, JSON Schema and Protobuf codecs: decoding, bad payloads, the output schema and encoding."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import orjson
import pytest
from google.protobuf import descriptor_pool, message_factory

from worker.formats.avro import AvroCodec, json_safe
from worker.formats.codec import InvalidPayload, SchemaProblem
from worker.formats.json_schema import JsonSchemaCodec
from worker.formats.proto_text import proto_source
from worker.formats.protobuf import MAIN_FILE, ProtobufCodec, compile_proto
from worker.formats.registry import RegisteredSchema

ENTITIES = [{"label": "PER", "text": "Ada", "start": 0, "end": 3, "score": 0.5}]
NER = {"model": "tiny", "source": {"topic": "docs", "partition": 2, "offset": 7}, "timings": {"engine_ms": 1.25}}

AVRO = {"type": "record", "name": "Doc", "namespace": "demo", "fields": [
    {"name": "id", "type": "long"}, {"name": "text", "type": "string"},
    {"name": "blob", "type": "bytes", "default": ""},
]}


def avro_bytes(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


class TestAvro:
    codec = AvroCodec(RegisteredSchema("AVRO", orjson.dumps(AVRO).decode()))

    def test_decodes_a_record_with_the_writers_schema(self) -> None:
        record = {"id": 5, "text": "Ada Lovelace", "blob": b"\xff\x00"}
        assert self.codec.decode(avro_bytes(AVRO, record)) == record
        assert self.codec.record_name == "demo.Doc"

    @pytest.mark.parametrize("cut", [1, 3])
    def test_truncated_bytes_are_invalid(self, cut: int) -> None:
        payload = avro_bytes(AVRO, {"id": 5, "text": "Ada Lovelace", "blob": b""})
        with pytest.raises(InvalidPayload):
            self.codec.decode(payload[:-cut])

    def test_bytes_left_over_after_the_record_are_invalid(self) -> None:
        with pytest.raises(InvalidPayload, match="left over"):
            self.codec.decode(avro_bytes(AVRO, {"id": 5, "text": "x", "blob": b""}) + b"\x00\x00")

    def test_output_schema_adds_entities_and_ner_that_old_readers_skip(self) -> None:
        output = self.codec.output_schema()
        out_codec = AvroCodec(output)
        record = {"id": 5, "text": "Ada", "blob": b"", "entities": ENTITIES, "ner": NER}
        encoded = out_codec.encode(record)
        assert out_codec.decode(encoded) == record
        # Backward compatible: a consumer still on the input schema reads the output.
        old_view = fastavro.schemaless_reader(io.BytesIO(encoded), fastavro.parse_schema(orjson.loads(output.text)),
                                              fastavro.parse_schema(AVRO))
        assert old_view == {"id": 5, "text": "Ada", "blob": b""}
        # And the output schema reads input records (the new fields take their defaults).
        input_bytes = avro_bytes(AVRO, {"id": 1, "text": "t", "blob": b""})
        new_view = fastavro.schemaless_reader(io.BytesIO(input_bytes), fastavro.parse_schema(AVRO),
                                              fastavro.parse_schema(orjson.loads(output.text)))
        assert new_view["entities"] == [] and new_view["ner"] is None

    def test_a_schema_that_has_an_entities_field_already_cannot_be_extended(self) -> None:
        taken = dict(AVRO, fields=[*AVRO["fields"], {"name": "entities", "type": "string"}])
        with pytest.raises(SchemaProblem, match="entities"):
            AvroCodec(RegisteredSchema("AVRO", orjson.dumps(taken).decode())).output_schema()

    @pytest.mark.parametrize("text", ['"string"', "{not json", '{"type": "record", "name": "X", "fields": 3}'])
    def test_a_schema_that_is_not_a_record_is_a_schema_problem(self, text: str) -> None:
        with pytest.raises(SchemaProblem):
            AvroCodec(RegisteredSchema("AVRO", text))

    def test_json_safe_writes_bytes_as_avro_json_does(self) -> None:
        assert json_safe({"b": [b"\xff\x00"], "n": 1}) == {"b": ["ÿ\x00"], "n": 1}


JSON_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Doc", "type": "object",
               "properties": {"id": {"type": "integer"}, "text": {"type": "string"}},
               "required": ["text"], "additionalProperties": False}


class TestJsonSchema:
    codec = JsonSchemaCodec(RegisteredSchema("JSON", orjson.dumps(JSON_SCHEMA).decode()))

    def test_decodes_a_matching_document(self) -> None:
        assert self.codec.decode(b'{"id": 1, "text": "Ada"}') == {"id": 1, "text": "Ada"}

    @pytest.mark.parametrize(("payload", "problem"), [
        (b'{"id": "one", "text": "Ada"}', "at id"), (b'{"id": 1}', "text"), (b"[1]", "array|object"),
        (b"{nope", "not JSON"),
    ])
    def test_a_document_that_does_not_match_is_invalid(self, payload: bytes, problem: str) -> None:
        with pytest.raises(InvalidPayload, match=problem):
            self.codec.decode(payload)

    def test_output_schema_takes_the_added_fields_despite_additional_properties_false(self) -> None:
        out_codec = JsonSchemaCodec(self.codec.output_schema())
        record = {"id": 1, "text": "Ada", "entities": ENTITIES, "ner": NER}
        assert orjson.loads(out_codec.encode(record)) == record
        with pytest.raises(InvalidPayload):
            self.codec.encode(record)  # the input schema itself refuses them
        with pytest.raises(InvalidPayload):
            out_codec.encode({**record, "entities": [{"label": "PER"}]})


PROTO = """syntax = "proto3";
package demo.v1;
import "google/protobuf/timestamp.proto";
message Other { int32 x = 1; }
message Doc {
  int64 id = 1;
  string text = 2;
  map<string, string> tags = 3;
  google.protobuf.Timestamp at = 4;
  oneof kind { string a = 5; int64 b = 6; }
  optional int32 maybe = 7;
  enum Level { LOW = 0; HIGH = 1; }
  Level level = 8;
  reserved 20 to 22;
  message Inner { repeated double v = 1; message Deep { string text = 1; } }
  Inner inner = 9;
}
"""


def _by_number(message: Any) -> Any:
    copy = type(message)()
    copy.CopyFrom(message)
    fields = sorted(copy.field, key=lambda f: f.number)
    del copy.field[:]
    copy.field.extend(fields)
    nested = [_by_number(n) for n in copy.nested_type]
    del copy.nested_type[:]
    copy.nested_type.extend(nested)
    return copy


def message_class(text: str, full_name: str) -> Any:
    pool = descriptor_pool.DescriptorPool()
    for file in compile_proto({MAIN_FILE: text}, MAIN_FILE).file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


class TestProtobuf:
    schema = RegisteredSchema("PROTOBUF", PROTO)
    codec = ProtobufCodec(schema, (1,))

    def test_decodes_the_message_the_indexes_name_with_64_bit_numbers_as_numbers(self) -> None:
        doc = message_class(PROTO, "demo.v1.Doc")(id=2**40, text="Ada", b=-3, tags={"k": "v"})
        record = self.codec.decode(doc.SerializeToString())
        assert record == {"id": 2**40, "text": "Ada", "b": -3, "tags": {"k": "v"}, "level": "LOW"}
        assert self.codec.record_name == "demo.v1.Doc"
        assert self.codec.message_indexes == b"\x02\x02"

    def test_an_empty_text_is_still_a_field(self) -> None:
        assert self.codec.decode(b"")["text"] == ""

    def test_nested_messages_are_named_by_their_path(self) -> None:
        # Doc's nested types, as Protobuf counts them: TagsEntry (made by the map field), Inner.
        deep = ProtobufCodec(self.schema, (1, 1, 0))
        assert deep.record_name == "demo.v1.Doc.Inner.Deep"
        assert deep.decode(b"\x0a\x03Ada") == {"text": "Ada"}

    @pytest.mark.parametrize("indexes", [(2,), (1, 5)])
    def test_indexes_that_name_no_message_are_invalid(self, indexes: tuple[int, ...]) -> None:
        with pytest.raises(InvalidPayload, match="name no message"):
            ProtobufCodec(self.schema, indexes)

    def test_bytes_that_are_not_the_message_are_invalid(self) -> None:
        with pytest.raises(InvalidPayload):
            self.codec.decode(b"\x0a\xff\xff\xff")

    def test_a_schema_that_does_not_compile_is_a_schema_problem(self) -> None:
        with pytest.raises(SchemaProblem, match="does not compile"):
            ProtobufCodec(RegisteredSchema("PROTOBUF", "syntax = \"proto3\"; message X { nope y = 1; }"), (0,))

    def test_output_message_adds_fields_after_every_used_or_reserved_number(self) -> None:
        output = self.codec.output_schema()
        out_class = message_class(output.text, "demo.v1.Doc")
        numbers = {f.name: f.number for f in out_class.DESCRIPTOR.fields}
        assert numbers["entities"] == 23 and numbers["ner"] == 24
        out_codec = ProtobufCodec(output, (1,))
        record = {"id": 7, "text": "Ada", "a": "x", "tags": {}, "level": "HIGH", "entities": ENTITIES, "ner": NER}
        encoded = out_codec.encode(record)
        assert out_codec.decode(encoded) == record
        # The input's message reads the output (the new fields are unknown fields to it).
        assert self.codec.decode(encoded)["text"] == "Ada"

    def test_printed_source_compiles_back_to_the_same_messages_in_the_same_order(self) -> None:
        main = next(f for f in compile_proto({MAIN_FILE: PROTO}, MAIN_FILE).file if f.name == MAIN_FILE)
        again = next(f for f in compile_proto({MAIN_FILE: proto_source(main)}, MAIN_FILE).file if f.name == MAIN_FILE)
        assert (again.package, again.syntax, again.dependency) == (main.package, main.syntax, main.dependency)
        # Field order within a message does not matter to the encoding; nested type order does.
        assert [_by_number(m) for m in again.message_type] == [_by_number(m) for m in main.message_type]

    def test_proto2_labels_and_defaults_survive_printing(self) -> None:
        proto2 = 'syntax = "proto2";\npackage p2;\nmessage M {\n  required string text = 1;\n' \
                 '  optional int32 n = 2 [default = 5];\n  optional string s = 3 [default = "a\\"b"];\n}\n'
        main = next(f for f in compile_proto({MAIN_FILE: proto2}, MAIN_FILE).file if f.name == MAIN_FILE)
        printed = proto_source(main)
        again = next(f for f in compile_proto({MAIN_FILE: printed}, MAIN_FILE).file if f.name == MAIN_FILE)
        assert [_by_number(m) for m in again.message_type] == [_by_number(m) for m in main.message_type]
        assert "required string text = 1;" in printed

    def test_a_message_with_a_ner_field_cannot_be_extended(self) -> None:
        codec = ProtobufCodec(RegisteredSchema("PROTOBUF", 'syntax = "proto3"; message X { string ner = 1; }'), (0,))
        with pytest.raises(SchemaProblem, match="ner"):
            codec.output_schema()


def test_a_schema_registered_as_a_base64_descriptor_decodes_like_its_source() -> None:
    """What Confluent's serialisers register, and some registries hand back unchanged."""
    import base64

    main = next(f for f in compile_proto({MAIN_FILE: PROTO}, MAIN_FILE).file if f.name == MAIN_FILE)
    serialized = RegisteredSchema("PROTOBUF", base64.b64encode(main.SerializeToString()).decode())
    codec = ProtobufCodec(serialized, (1,))
    doc = message_class(PROTO, "demo.v1.Doc")(id=3, text="Ada")
    assert codec.decode(doc.SerializeToString()) == TestProtobuf.codec.decode(doc.SerializeToString())
    assert "message Doc {" in codec.output_schema().text
