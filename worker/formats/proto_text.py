"""Write a ``FileDescriptorProto`` back as ``.proto`` source, to register the output schema.

A registry takes Protobuf schemas as ``.proto`` text, and the output schema is made by editing
the input's descriptor, so it has to be printed. This covers what record schemas use: messages,
nested messages, enums, maps, oneofs, proto3 ``optional``, proto2 labels and defaults, reserved
numbers and names, and plain options. Groups and editions are refused (``SchemaProblem``);
services and extensions are left out (a record's encoding does not depend on them).
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf import descriptor_pb2
from google.protobuf.message import Message

from worker.formats.codec import SchemaProblem

_Field = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    _Field.TYPE_DOUBLE: "double", _Field.TYPE_FLOAT: "float", _Field.TYPE_INT64: "int64",
    _Field.TYPE_UINT64: "uint64", _Field.TYPE_INT32: "int32", _Field.TYPE_FIXED64: "fixed64",
    _Field.TYPE_FIXED32: "fixed32", _Field.TYPE_BOOL: "bool", _Field.TYPE_STRING: "string",
    _Field.TYPE_BYTES: "bytes", _Field.TYPE_UINT32: "uint32", _Field.TYPE_SFIXED32: "sfixed32",
    _Field.TYPE_SFIXED64: "sfixed64", _Field.TYPE_SINT32: "sint32", _Field.TYPE_SINT64: "sint64",
}
_INDENT = "  "


def proto_source(file: descriptor_pb2.FileDescriptorProto) -> str:
    syntax = file.syntax or "proto2"
    if syntax not in ("proto2", "proto3"):
        raise SchemaProblem(f"Protobuf {syntax} schemas are not supported")
    lines = [f'syntax = "{syntax}";']
    if file.package:
        lines.append(f"package {file.package};")
    for index, dependency in enumerate(file.dependency):
        public = "public " if index in file.public_dependency else ""
        lines.append(f'import {public}"{dependency}";')
    lines.extend(_options(file.options, ""))
    for enum in file.enum_type:
        lines.extend(_enum(enum, ""))
    for message in file.message_type:
        lines.extend(_message(message, "", syntax))
    return "\n".join(lines) + "\n"


def _message(message: descriptor_pb2.DescriptorProto, indent: str, syntax: str) -> Iterator[str]:
    inner = indent + _INDENT
    yield f"{indent}message {message.name} {{"
    yield from _options(message.options, inner)
    map_entries = {nested.name: nested for nested in message.nested_type if nested.options.map_entry}
    map_fields = {f.type_name.rsplit(".", 1)[-1]: f for f in message.field
                  if f.label == _Field.LABEL_REPEATED and f.type_name.rsplit(".", 1)[-1] in map_entries}
    # A map field declares its entry type where it stands: printing each map field in its entry's
    # place keeps the order of nested types, which Protobuf's message indexes count.
    for nested in message.nested_type:
        if nested.options.map_entry:
            yield f"{inner}{_field(map_fields[nested.name], syntax, map_entries)}"
        else:
            yield from _message(nested, inner, syntax)
    for enum in message.enum_type:
        yield from _enum(enum, inner)
    real_oneofs = {f.oneof_index for f in message.field if f.HasField("oneof_index") and not f.proto3_optional}
    printed_maps = {id(f) for f in map_fields.values()}
    for field in message.field:
        if (not field.HasField("oneof_index") or field.proto3_optional) and id(field) not in printed_maps:
            yield f"{inner}{_field(field, syntax, map_entries)}"
    for oneof_index in sorted(real_oneofs):
        yield f"{inner}oneof {message.oneof_decl[oneof_index].name} {{"
        for field in message.field:
            if field.HasField("oneof_index") and field.oneof_index == oneof_index and not field.proto3_optional:
                yield f"{inner}{_INDENT}{_field(field, 'oneof', map_entries)}"
        yield f"{inner}}}"
    for reserved in message.reserved_range:
        yield f"{inner}reserved {_range(reserved.start, reserved.end - 1)};"
    if message.reserved_name:
        yield f"{inner}reserved {', '.join(_quoted(name) for name in message.reserved_name)};"
    for extensions in message.extension_range:
        yield f"{inner}extensions {_range(extensions.start, extensions.end - 1)};"
    yield f"{indent}}}"


def _field(field: descriptor_pb2.FieldDescriptorProto, syntax: str,
           map_entries: dict[str, descriptor_pb2.DescriptorProto]) -> str:
    if field.type == _Field.TYPE_GROUP:
        raise SchemaProblem(f"the Protobuf field {field.name} is a group; groups are not supported")
    entry = map_entries.get(field.type_name.rsplit(".", 1)[-1]) if field.type == _Field.TYPE_MESSAGE else None
    if entry is not None and field.label == _Field.LABEL_REPEATED:
        key, value = entry.field[0], entry.field[1]
        declaration = f"map<{_type(key)}, {_type(value)}> {field.name} = {field.number}"
    else:
        declaration = f"{_label(field, syntax)}{_type(field)} {field.name} = {field.number}"
    options = []
    if field.HasField("default_value"):
        textual = field.type in (_Field.TYPE_STRING, _Field.TYPE_BYTES)
        options.append(f"default = {_quoted(field.default_value) if textual else field.default_value}")
    if field.options.HasField("packed"):
        options.append(f"packed = {str(field.options.packed).lower()}")
    if field.options.HasField("deprecated"):
        options.append(f"deprecated = {str(field.options.deprecated).lower()}")
    return declaration + (f" [{', '.join(options)}]" if options else "") + ";"


def _label(field: descriptor_pb2.FieldDescriptorProto, syntax: str) -> str:
    if field.label == _Field.LABEL_REPEATED:
        return "repeated "
    if syntax == "proto2":
        return "required " if field.label == _Field.LABEL_REQUIRED else "optional "
    return "optional " if field.proto3_optional else ""


def _type(field: descriptor_pb2.FieldDescriptorProto) -> str:
    return _SCALARS.get(field.type) or field.type_name  # type names are fully qualified (".pkg.Name")


def _enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> Iterator[str]:
    inner = indent + _INDENT
    yield f"{indent}enum {enum.name} {{"
    yield from _options(enum.options, inner)
    for value in enum.value:
        yield f"{inner}{value.name} = {value.number};"
    for reserved in enum.reserved_range:
        yield f"{inner}reserved {_range(reserved.start, reserved.end)};"  # enum ranges are inclusive
    if enum.reserved_name:
        yield f"{inner}reserved {', '.join(_quoted(name) for name in enum.reserved_name)};"
    yield f"{indent}}}"


def _options(options: Message, indent: str) -> Iterator[str]:
    for field, value in options.ListFields():
        if field.name == "map_entry" or field.is_extension:
            continue  # map entries print as map<>; custom options need their own definitions
        if field.enum_type is not None:
            text = field.enum_type.values_by_number[value].name
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, str):
            text = _quoted(value)
        elif isinstance(value, (int, float)):
            text = str(value)
        else:
            continue  # repeated or message-typed options (uninterpreted_option, features)
        yield f"{indent}option {field.name} = {text};"


def _range(start: int, end: int) -> str:
    return str(start) if start == end else f"{start} to {'max' if end >= 536870911 else end}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
