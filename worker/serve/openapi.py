"""The OpenAPI 3.1 document of ``ner-worker serve``, built for the configured text field.

The entity schema is the one of schemas/output.schema.json (a test keeps the two equal); an
annotated document's ``ner.source`` names the request and the document's index in it.
"""

from __future__ import annotations

from typing import Any

from worker.output import OutputControls

ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["label", "text", "start", "end", "score"],
    "additionalProperties": False,
    "properties": {
        "label": {"type": "string", "minLength": 1, "description": "Entity type without the B-/I- prefix, e.g. PER."},
        "text": {"type": "string", "minLength": 1, "description": "Exactly the original text between start and end."},
        "start": {"type": "integer", "minimum": 0, "description": "Code point offset of the first character."},
        "end": {"type": "integer", "minimum": 1, "description": "Code point offset one past the last character."},
        "score": {"type": "number", "minimum": 0, "maximum": 1,
                  "description": "Mean softmax probability of the entity's tokens or words "
                                 "(Hugging Face pipeline semantics)."},
        "word_start": {"type": "integer", "minimum": 0,
                       "description": "Pre-split input only: index of the first given word of the entity."},
        "word_end": {"type": "integer", "minimum": 1,
                     "description": "Pre-split input only: index one past the last given word of the entity."},
    },
}

_REF = "#/components/schemas/"


def _path_schema(field: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema requiring the (dotted) field to match ``schema``."""
    for part in reversed(field.split(".")):
        schema = {"type": "object", "required": [part], "properties": {part: schema}}
    return schema


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}


def _annotated_document(output: OutputControls) -> dict[str, Any]:
    """The answer for one document, in the shape and under the field name the output controls say."""
    properties: dict[str, Any] = {
        output.entities_field: {"type": "array", "items": {"$ref": _REF + "Entity"}},
        "ner": {"type": "object", "required": ["model", "source"], "properties": {
            "model": {"type": "string"},
            "source": {"type": "object", "required": ["request", "index"], "additionalProperties": False,
                       "properties": {"request": {"type": "string"}, "index": {"type": "integer", "minimum": 0}}},
            "timings": {"type": "object", "properties": {"engine_ms": {"type": "number", "minimum": 0}}},
            "offsets_into": {"const": "joined_words",
                             "description": "Pre-split input only: the offsets index the words joined by single "
                                            "spaces."},
        }},
    }
    if output.shape == "entities":
        properties["key"] = {"type": "null", "description": "Documents over HTTP have no record key."}
        return {"type": "object", "required": ["key", output.entities_field, "ner"], "additionalProperties": False,
                "description": f"Entities only: key, {output.entities_field} and ner.", "properties": properties}
    return {"type": "object", "required": [output.entities_field, "ner"], "additionalProperties": True,
            "description": f"The input object (or {{text field: text}} for text/plain) plus {output.entities_field} "
                           "and ner.", "properties": properties}


def openapi_document(*, text_field: str, max_request_documents: int, version: str,
                     output: OutputControls, words_field: str = "") -> dict[str, Any]:
    input_schema = _path_schema(text_field, {"type": "string", "description": "The text to annotate."})
    input_schema["properties"]["id"] = {"description": "Optional document id, passed through like every other field."}
    input_schema["additionalProperties"] = True
    input_schema["description"] = "Any JSON object with the text; every other field is passed through."
    if words_field:
        words = _path_schema(words_field, {"type": "array", "items": {"type": "string"},
                                           "description": "Pre-split input: the words, annotated joined by single "
                                                          "spaces."})
        input_schema = {"description": "Any JSON object with the text, or without it the words; every other field "
                                       "is passed through.", "anyOf": [
            input_schema,
            # The text wins where both are given, so the words count only without it.
            {"allOf": [words, {"not": _path_schema(text_field, {})}], "additionalProperties": True},
        ]}
    health = {"description": "Checks", "content": {"application/json": {"schema": {"$ref": _REF + "Health"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "kafka-ner-worker HTTP API", "version": version,
                 "description": "Named entities with exact character spans, as in the stream's output topic."},
        "paths": {
            "/v1/annotate": {"post": {
                "operationId": "annotate",
                "summary": "Annotate one document (an object, or text/plain) or a list of documents.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"oneOf": [
                        {"$ref": _REF + "InputDocument"},
                        # Items are not constrained: like a bulk API, an item that is not a valid
                        # document is answered in "errors" by its index and the others are annotated.
                        {"type": "array", "maxItems": max_request_documents,
                         "description": "Documents (see InputDocument); invalid items are reported by index."},
                    ]}},
                    "text/plain": {"schema": {"type": "string", "minLength": 1,
                                              "description": "The whole body is the text."}},
                }},
                "responses": {
                    "200": {"description": "The annotated document, or for a list one result per document",
                            "content": {"application/json": {"schema": {"anyOf": [
                                {"$ref": _REF + "AnnotatedDocument"}, {"$ref": _REF + "BatchResult"}]}}}},
                    "400": _error("The body is not valid JSON or not UTF-8"),
                    "413": _error("The body is larger than the server takes (--max-request-bytes)"),
                    "422": _error("The document cannot be annotated, or the list is too long (reason says why)"),
                    "503": _error("Not ready, overloaded, or the engine failed; retry later"),
                },
            }},
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process answers.",
                                 "responses": {"200": health}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "The engine is loaded and can take work.",
                                "responses": {"200": health, "503": health}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics.", "responses": {
                "200": {"description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {
            "InputDocument": input_schema,
            "Entity": ENTITY_SCHEMA,
            "AnnotatedDocument": _annotated_document(output),
            "BatchResult": {
                "type": "object", "required": ["documents", "errors"], "additionalProperties": False,
                "properties": {
                    "documents": {"type": "array", "description": "In request order; null where errors says why.",
                                  "items": {"anyOf": [{"$ref": _REF + "AnnotatedDocument"}, {"type": "null"}]}},
                    "errors": {"type": "array", "items": {
                        "type": "object", "required": ["index", "reason", "message"], "additionalProperties": False,
                        "properties": {"index": {"type": "integer", "minimum": 0}, "reason": {"type": "string"},
                                       "message": {"type": "string"}}}},
                },
            },
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["reason", "message"],
                "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}}}},
            "Health": {"type": "object", "required": ["status", "checks"], "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
        }},
    }
