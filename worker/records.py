"""Parse and validate input records; build output and dead-letter records.

Pure functions on bytes and dicts, no Kafka: the stream, the offline annotator and the HTTP
server share them. A record that cannot be processed becomes a ``Rejection`` with a machine
reason and a human message; it is never dropped and never stops its partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from worker.settings import Settings

# Machine reasons carried in the dead-letter header ``ner.error.reason``.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_TEXT = "missing_text"
TEXT_NOT_STRING = "text_not_string"
TOO_LARGE = "too_large"
TOO_DEEP = "too_deep"
TOO_MANY_ENTITIES = "too_many_entities"
EMPTY_VALUE = "empty_value"
DECODE_FAILED = "decode_failed"
OUTPUT_TOO_LARGE = "output_too_large"
OUTPUT_REJECTED = "output_rejected"

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Document:
    """A valid input: the text to annotate and the object it came in (passed through)."""

    text: str
    body: dict[str, Any] | None
    """The parsed JSON object, or None in plain-text mode."""


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    message: str


def parse_value(value: bytes | None, settings: Settings) -> Document | Rejection:
    """Turn a record value into a ``Document`` or say exactly why it cannot be one."""
    if value is None or len(value) == 0:
        return Rejection(EMPTY_VALUE, "the record has no value")
    if len(value) > settings.max_record_bytes:
        return Rejection(TOO_LARGE, f"the record has {len(value)} bytes; the limit is {settings.max_record_bytes}")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(INVALID_UTF8, f"the value is not valid UTF-8: {exc.reason} at byte {exc.start}")
    if settings.input_format == "text":
        return _checked_text(decoded, None, settings)
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return Rejection(INVALID_JSON, f"the value is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return Rejection(NOT_AN_OBJECT, f"the JSON value is {_with_article(_json_type(body))}, not an object")
    if _depth_exceeds(body, settings.max_json_depth):
        return Rejection(TOO_DEEP, f"the JSON nesting is deeper than {settings.max_json_depth}")
    text = _lookup(body, settings.text_field)
    if text is _MISSING:
        return Rejection(MISSING_TEXT, f"the object has no field {settings.text_field!r}")
    if not isinstance(text, str):
        return Rejection(TEXT_NOT_STRING,
                         f"the field {settings.text_field!r} is {_with_article(_json_type(text))}, not a string")
    return _checked_text(text, body, settings)


def _checked_text(text: str, body: dict[str, Any] | None, settings: Settings) -> Document | Rejection:
    if len(text) > settings.max_text_chars:
        return Rejection(TOO_LARGE, f"the text has {len(text)} characters; the limit is {settings.max_text_chars}")
    return Document(text=text, body=body)


_MISSING: Any = object()


def _lookup(body: dict[str, Any], dotted: str) -> Any:
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


def ner_block(model: str, source: Mapping[str, object], *, engine_seconds: float) -> dict[str, Any]:
    """The output's ``ner`` block: the model, where the input came from (a Kafka position, a file
    line, a request) and the engine time of the batch the document was scored in."""
    return {"model": model, "source": dict(source), "timings": {"engine_ms": round(engine_seconds * 1000, 3)}}


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
    text_field: str,
    ner: dict[str, Any],
) -> bytes:
    """The input object plus ``entities`` and the ``ner`` block, as JSON bytes."""
    body: dict[str, Any] = dict(document.body) if document.body is not None else {text_field: document.text}
    body["entities"] = entities
    body["ner"] = ner
    return orjson.dumps(body)


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
