"""Protobuf messages: the registered ``.proto`` compiled with protoc (grpcio-tools), messages
read and written with protobuf's own runtime, records as protobuf's JSON mapping (field names as
declared, 64-bit integers as numbers). The output schema is the input's message with two fields
added after its highest field number: ``repeated NerEntity entities`` and ``NerBlock ner``."""

from __future__ import annotations

import base64
import binascii
import importlib.resources
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError
from grpc_tools import protoc

from worker.formats.codec import ADDED, InvalidPayload, SchemaProblem
from worker.formats.proto_text import proto_source
from worker.formats.registry import RegisteredSchema
from worker.formats.wire import write_message_indexes

MAIN_FILE = "registered_schema.proto"
_Field = descriptor_pb2.FieldDescriptorProto
_PROTO_TYPES = {"string": _Field.TYPE_STRING, "int": _Field.TYPE_INT32, "long": _Field.TYPE_INT64,
                "double": _Field.TYPE_DOUBLE}
_WELL_KNOWN = importlib.resources.files("grpc_tools") / "_proto"


class ProtobufCodec:
    def __init__(self, schema: RegisteredSchema, indexes: tuple[int, ...],
                 imports: Mapping[str, str] | None = None) -> None:
        """``imports``: the text of every file the schema imports by name (its references)."""
        self._indexes = indexes
        self._imports = dict(imports or {})
        files = _file_set(schema.text, self._imports)
        pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            pool.Add(file)
        self._file = next(f for f in files.file if f.name == MAIN_FILE)
        self._message_path = _message_path(self._file, indexes)
        full_name = ".".join(filter(None, [self._file.package, *(m.name for m in self._message_path)]))
        self._class = message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
        self._full_name = full_name

    @property
    def record_name(self) -> str:
        return self._full_name

    @property
    def message_indexes(self) -> bytes:
        return write_message_indexes(self._indexes)

    def decode(self, payload: bytes) -> dict[str, Any]:
        message = self._class()
        try:
            message.ParseFromString(payload)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise InvalidPayload(f"the bytes are not a {self._full_name} message: {exc}") from exc
        record: dict[str, Any] = json_format.MessageToDict(
            message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True,
            unquote_int64_if_possible=True)
        return record

    def encode(self, record: dict[str, Any]) -> bytes:
        message = self._class()
        try:
            json_format.ParseDict(record, message)
        except json_format.ParseError as exc:
            raise InvalidPayload(f"the output does not fit {self._full_name}: {exc}") from exc
        return bytes(message.SerializeToString())

    def output_schema(self) -> RegisteredSchema:
        extended = descriptor_pb2.FileDescriptorProto()
        extended.CopyFrom(self._file)
        target = _message_path(extended, self._indexes)[-1]
        ADDED.check_free({f.name for f in target.field}, f"the message {self._full_name}")
        prefix = f".{self._full_name}"
        _add_message(target, "NerEntity", ADDED.entity)
        block = target.nested_type.add(name="NerBlock")
        _add_message(block, "Source", ADDED.ner_source)
        _add_message(block, "Timings", ADDED.ner_timings)
        optional = _Field.LABEL_OPTIONAL
        block.field.add(name="model", number=1, type=_Field.TYPE_STRING, label=optional)
        block.field.add(name="source", number=2, type=_Field.TYPE_MESSAGE, label=optional,
                        type_name=f"{prefix}.NerBlock.Source")
        block.field.add(name="timings", number=3, type=_Field.TYPE_MESSAGE, label=optional,
                        type_name=f"{prefix}.NerBlock.Timings")
        # After every number in use or reserved, so the new fields never reuse a retired number.
        used = [f.number for f in target.field] + [r.end - 1 for r in target.reserved_range]
        number = max(used, default=0) + 1
        target.field.add(name=ADDED.entities, number=number, type=_Field.TYPE_MESSAGE,
                         label=_Field.LABEL_REPEATED, type_name=f"{prefix}.NerEntity")
        target.field.add(name=ADDED.ner, number=number + 1, type=_Field.TYPE_MESSAGE, label=optional,
                         type_name=f"{prefix}.NerBlock")
        return RegisteredSchema("PROTOBUF", proto_source(extended))


def compile_proto(files: Mapping[str, str], main: str) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``main`` (and what it imports from ``files`` or protobuf's well-known types)."""
    with tempfile.TemporaryDirectory(prefix="ner-proto-") as folder:
        root = Path(folder)
        for name, text in files.items():
            path = root / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        out = root / "descriptors.pb"
        # protoc prints its own error messages to the process's stderr (the worker's log).
        status = protoc.main(["protoc", f"--proto_path={root / 'src'}", f"--proto_path={_WELL_KNOWN}",
                              f"--descriptor_set_out={out}", "--include_imports", main])
        if status != 0:
            raise SchemaProblem("the registered Protobuf schema does not compile (protoc's message is in the log)")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _file_set(text: str, imports: Mapping[str, str]) -> descriptor_pb2.FileDescriptorSet:
    """The compiled schema and everything it imports, dependencies first.

    Registries normally hold ``.proto`` text; some keep what Confluent's own serialisers send, a
    base64 ``FileDescriptorProto``, and hand that back as is: both are accepted.
    """
    serialized = _serialized_descriptor(text)
    if serialized is None:
        return compile_proto({**imports, MAIN_FILE: text}, MAIN_FILE)
    files = descriptor_pb2.FileDescriptorSet()
    for dependency in serialized.dependency:
        source = {**imports, "__import__.proto": f'syntax = "proto3";\nimport "{dependency}";\n'}
        for file in compile_proto(source, "__import__.proto").file:
            if file.name != "__import__.proto" and file.name not in {f.name for f in files.file}:
                files.file.append(file)
    serialized.name = MAIN_FILE
    files.file.append(serialized)
    return files


def _serialized_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    if not text or any(c in text for c in " ;{\n"):
        return None  # .proto source
    try:
        return descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(text, validate=True))
    except (binascii.Error, DecodeError) as exc:
        raise SchemaProblem(f"the registered Protobuf schema is neither .proto text nor a descriptor: {exc}") from exc


def _message_path(file: descriptor_pb2.FileDescriptorProto,
                  indexes: tuple[int, ...]) -> list[descriptor_pb2.DescriptorProto]:
    path: list[descriptor_pb2.DescriptorProto] = []
    candidates = file.message_type
    for index in indexes:
        if index >= len(candidates):
            raise InvalidPayload(f"the message indexes {list(indexes)} name no message of the schema")
        path.append(candidates[index])
        candidates = candidates[index].nested_type
    if not path:
        raise InvalidPayload("the message indexes are empty")
    return path


def _add_message(parent: descriptor_pb2.DescriptorProto, name: str, spec: tuple[tuple[str, str], ...]) -> None:
    nested = parent.nested_type.add(name=name)
    for number, (field_name, kind) in enumerate(spec, start=1):
        nested.field.add(name=field_name, number=number, type=_PROTO_TYPES[kind], label=_Field.LABEL_OPTIONAL)
