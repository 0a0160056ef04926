"""Parse and validate input records; build output and dead-letter records.

Pure functions on bytes and dicts, no Kafka: the stream, the offline annotator and the HTTP
server share them. A record that cannot be processed becomes a ``Rejection`` with a machine
reason and a human message; it is never dropped and never stops its partition.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from worker.output import OutputControls
from worker.settings import REGISTRY_FORMATS, InputFormat, Settings

if TYPE_CHECKING:
    from worker.formats import SchemaKey
    from worker.formats.resolver import CacheKey

# Machine reasons carried in the dead-letter header ``ner.error.reason``.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
WORDS_NOT_STRINGS = "words_not_strings"
TOO_LARGE = "too_large"
TOO_DEEP = "too_deep"
TOO_MANY_ENTITIES = "too_many_entities"
EMPTY_VALUE = "empty_value"
DECODE_FAILED = "decode_failed"
OUTPUT_TOO_LARGE = "output_too_large"
OUTPUT_REJECTED = "output_rejected"

Headers = Sequence[tuple[str, bytes]]


# What the output's ``ner.offsets_into`` says for pre-split input: the entity offsets index the
# words joined by single spaces, a text that is not in the input.
JOINED_WORDS = "joined_words"


@dataclass(slots=True)
class Document:
    """A valid input: the text to annotate and the object it came in (passed through). Never
    changed once parsed (not frozen only because a frozen dataclass costs twice as much to make,
    once per record)."""

    text: str
    body: dict[str, Any] | None
    """The parsed JSON object (or decoded record), or None in plain-text mode."""
    schema: SchemaKey | None = None
    """The writer's schema of a Schema Registry record: the output is encoded with its extension."""
    words: tuple[str, ...] | None = None
    """Pre-split input (the pipeline's ``is_split_into_words``): the given words; ``text`` is
    them joined by single spaces. None for text input."""

    @property
    def tokenizer_input(self) -> str | tuple[str, ...]:
        """What the tokenizer reads: the words where the input gave them, else the text."""
        return self.words if self.words is not None else self.text


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """What ``parse_value`` needs of the settings: the input contract and its limits."""

    input_format: InputFormat
    text_field: str
    max_record_bytes: int
    max_text_chars: int
    max_json_depth: int
    registry: CacheKey | None = None
    """Which schema cache decodes records of a Schema Registry format; None for JSON and text."""
    words_field: str = ""
    """Where pre-split input is found in a JSON object without the text field; "" for none."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseOptions:
        registry = None
        if settings.input_format in REGISTRY_FORMATS:
            from worker.formats.resolver import cache_key  # the codecs load only for registry formats

            registry = cache_key(settings)
        return cls(input_format=settings.input_format, text_field=settings.text_field,
                   max_record_bytes=settings.max_record_bytes, max_text_chars=settings.max_text_chars,
                   max_json_depth=settings.max_json_depth, registry=registry,
                   words_field=settings.words_field if settings.input_format == "json" else "")


def parse_value(value: bytes | None, options: ParseOptions) -> Document | Rejection:
    """Turn a record value into a ``Document`` or say exactly why it cannot be one."""
    if value is None or len(value) == 0:
        return Rejection(EMPTY_VALUE, "the record has no value")
    if len(value) > options.max_record_bytes:
        return Rejection(TOO_LARGE, f"the record has {len(value)} bytes; the limit is {options.max_record_bytes}")
    if options.registry is not None:
        return _registry_document(value, options, options.registry)
    if options.input_format == "text":
        try:
            return _checked_text(value.decode("utf-8"), None, options)
        except UnicodeDecodeError as exc:
            return _invalid_utf8(exc)
    try:
        body = orjson.loads(value)  # which refuses invalid UTF-8 too: the value is decoded only to say why
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as invalid:
            return _invalid_utf8(invalid)
        return Rejection(INVALID_JSON, f"the value is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return Rejection(NOT_AN_OBJECT, f"the JSON value is {_with_article(_json_type(body))}, not an object")
    # Nesting cannot be deeper than the brackets in the value (most values have one or two).
    limit = options.max_json_depth
    if value.count(b"{") + value.count(b"[") > limit and _depth_exceeds(body, limit):
        return Rejection(TOO_DEEP, f"the JSON nesting is deeper than {limit}")
    return _object_document(body, options)


def _invalid_utf8(exc: UnicodeDecodeError) -> Rejection:
    return Rejection(INVALID_UTF8, f"the value is not valid UTF-8: {exc.reason} at byte {exc.start}")


def _registry_document(value: bytes, options: ParseOptions, registry: CacheKey) -> Document | Rejection:
    """An Avro, Protobuf or JSON Schema record in Confluent's wire format, decoded with its
    writer's schema (resolved from the registry before parsing)."""
    # Imported here: the JSON and text paths (and the annotate and serve commands) need neither
    # the codecs nor the registry client.
    from worker.formats import RecordRejected, cache_for

    try:
        decoded = cache_for(registry).decode(value)
    except RecordRejected as rejected:
        return Rejection(rejected.reason, rejected.message)
    return _object_document(decoded.record, options, schema=decoded.schema)


def _object_document(body: dict[str, Any], options: ParseOptions, schema: SchemaKey | None = None,
                     ) -> Document | Rejection:
    text = _lookup(body, options.text_field)
    if text is _MISSING and options.words_field:
        words = _lookup(body, options.words_field)
        if words is not _MISSING:
            return _words_document(words, body, options)
    if text is _MISSING:
        also = f" (nor {options.words_field!r})" if options.words_field else ""
        return Rejection(MISSING_TEXT, f"the object has no field {options.text_field!r}{also}")
    if not isinstance(text, str):
        return Rejection(TEXT_NOT_STRING,
                         f"the field {options.text_field!r} is {_with_article(_json_type(text))}, not a string")
    return _checked_text(text, body, options, schema)


def _words_document(words: Any, body: dict[str, Any], options: ParseOptions) -> Document | Rejection:
    if not isinstance(words, list):
        return Rejection(WORDS_NOT_STRINGS, f"the field {options.words_field!r} is "
                                            f"{_with_article(_json_type(words))}, not a list of strings")
    odd = next((index for index, word in enumerate(words) if not isinstance(word, str)), None)
    if odd is not None:
        return Rejection(WORDS_NOT_STRINGS, f"item {odd} of the field {options.words_field!r} is "
                                            f"{_with_article(_json_type(words[odd]))}, not a string")
    return _checked_text(" ".join(words), body, options, words=tuple(words))


def _checked_text(text: str, body: dict[str, Any] | None, options: ParseOptions,
                  schema: SchemaKey | None = None, words: tuple[str, ...] | None = None) -> Document | Rejection:
    if len(text) > options.max_text_chars:
        return Rejection(TOO_LARGE, f"the text has {len(text)} characters; the limit is {options.max_text_chars}")
    return Document(text=text, body=body, schema=schema, words=words)


_MISSING: Any = object()


def _lookup(body: dict[str, Any], dotted: str) -> Any:
    if "." not in dotted:  # the common case, without the split
        return body.get(dotted, _MISSING)
    node: Any = body
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _depth_exceeds(value: Any, limit: int) -> bool:
    # Iterative, so a hostile document cannot exhaust the Python stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return False


def _with_article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return {str: "string", int: "number", float: "number", list: "array", dict: "object"}.get(type(value), "value")


def engine_share(batch_seconds: float, tokens: int, batch_tokens: int) -> float:
    """A document's share of its batch's engine time: the engine's work grows with tokens, so
    the batch time is split by them. The shares of a batch add up to its time."""
    return batch_seconds * tokens / batch_tokens if batch_tokens > 0 else 0.0


def ner_block(model: str, source: Mapping[str, object], *, document_engine_seconds: float) -> dict[str, Any]:
    """The output's ``ner`` block: the model, where the input came from (a Kafka position, a file
    line, a request) and the document's share of its batch's engine time (``engine_share``)."""
    return {"model": model, "source": dict(source), "timings": {"engine_ms": round(document_engine_seconds * 1000, 3)}}


def interleave(rejected_or_pending: Sequence[Rejection | Any], results: Iterable[Any]) -> list[Any]:
    """Put results back among rejections: each non-``Rejection`` slot of ``rejected_or_pending``
    takes the next of ``results``, in order. Rejected inputs never reach the engine, so its
    results cover only the others; there must be exactly one result per such slot."""
    remaining = iter(results)
    merged: list[Any] = []
    for item in rejected_or_pending:
        if isinstance(item, Rejection):
            merged.append(item)
            continue
        try:
            merged.append(next(remaining))
        except StopIteration:
            raise ValueError("fewer results than inputs left to annotate") from None
    if next(remaining, _END) is not _END:
        raise ValueError("more results than inputs left to annotate")
    return merged


_END = object()


def output_value(
    document: Document,
    entities: Sequence[Mapping[str, object]],
    *,
    ner: dict[str, Any],
    controls: OutputControls,
    key: bytes | None = None,
) -> bytes:
    """The output record as JSON bytes (``output_object`` says its shape)."""
    return orjson.dumps(output_object(document, entities, ner=ner, controls=controls, key=key))


def output_object(
    document: Document,
    entities: Sequence[Mapping[str, object]],
    *,
    ner: dict[str, Any],
    controls: OutputControls,
    key: bytes | None = None,
) -> dict[str, Any]:
    """The output record, to encode as JSON or with a schema, in the shape ``controls`` says: the
    input object (or ``{text field: text}`` for plain text) plus the entities and the ``ner`` block;
    or, entities only, the record key, the entities and the ``ner`` block (whose source says where
    the document is)."""
    if controls.shape == "entities":
        body: dict[str, Any] = _key_fields(key)
    else:
        body = dict(document.body) if document.body is not None else {controls.text_field: document.text}
    body[controls.entities_field] = entities
    body["ner"] = ner if document.words is None else {**ner, "offsets_into": JOINED_WORDS}
    return body


def _key_fields(key: bytes | None) -> dict[str, Any]:
    # A key is bytes; JSON holds text. A key that is not UTF-8 travels as base64 instead.
    if key is None:
        return {"key": None}
    try:
        return {"key": key.decode("utf-8")}
    except UnicodeDecodeError:
        return {"key": None, "key_base64": base64.b64encode(key).decode("ascii")}


def dead_letter_headers(
    original: Headers, rejection: Rejection, *, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The original headers plus the reason and the source position (Kafka Connect's DLQ names)."""
    return [
        *original,
        ("ner.error.reason", rejection.reason.encode()),
        ("ner.error.message", rejection.message.encode()),
        ("__connect.errors.topic", topic.encode()),
        ("__connect.errors.partition", str(partition).encode()),
        ("__connect.errors.offset", str(offset).encode()),
        ("__connect.errors.exception.message", rejection.message.encode()),
    ]
