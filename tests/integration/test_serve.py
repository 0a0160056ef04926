"""`ner-worker serve` as a real process on the shipped model: the API, its contract, its
OpenAPI document (fuzzed by schemathesis), micro-batching of concurrent clients, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.fixtures.documents import (
    INPUT_SCHEMA,
    MODEL,
    OUTPUT_SCHEMA,
    REPO,
    SAMPLE_TEXTS,
    annotate_in_process,
    output_validator,
    same_entities,
)
from tests.fixtures.ports import free_port
from tests.fixtures.served import metric_total, wait_until_answering

TEXTS = SAMPLE_TEXTS


class ServeProcess:
    def __init__(self, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
        environ.update({"NER_MODEL": MODEL, "PYTHONPATH": str(REPO), **(env or {})})
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
                cwd=REPO, env=environ, stdout=log, stderr=log,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                ) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, data=body, headers=headers or {},
                                         method="POST" if body is not None else "GET")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def post_json(self, value: Any, **headers: str) -> tuple[int, dict[str, str], Any]:
        status, response_headers, body = self.request("/v1/annotate", orjson.dumps(value),
                                                      {"Content-Type": "application/json", **headers})
        return status, response_headers, orjson.loads(body)

    def wait_ready(self, timeout_s: float = 180) -> None:
        wait_until_answering(self.process, f"{self.url}/readyz", what="serve", log=self.log, timeout_s=timeout_s)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        return metric_total(self.request("/metrics")[2].decode(), name, labels)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("serve") / "serve.log", "--max-request-documents", "50",
                           "--max-request-bytes", "200000", env={"NER_MAX_BATCH_WAIT_MS": "50"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.process.kill()
        process.process.wait()


@pytest.fixture(scope="module")
def expected() -> list[Any]:
    """What the shared Annotator says in-process for TEXTS: the server must say the same."""
    return annotate_in_process(TEXTS)


def without_source(document: dict[str, Any]) -> dict[str, Any]:
    """An output record as the schema sees it once ner.source names a Kafka position."""
    copy = json.loads(json.dumps(document))
    copy["ner"]["source"] = {"topic": "t", "partition": 0, "offset": 0}
    return copy


def test_one_document_is_answered_with_the_stream_output_record(server: ServeProcess, expected: list[Any]) -> None:
    status, headers, body = server.post_json({"id": "doc-1", "text": TEXTS[0], "meta": {"n": 1}},
                                             **{"X-Request-ID": "req-42"})
    assert status == 200
    assert headers["X-Request-ID"] == "req-42"
    assert {k: body[k] for k in ("id", "text", "meta")} == {"id": "doc-1", "text": TEXTS[0], "meta": {"n": 1}}
    assert same_entities(body["entities"], expected[0]) and body["entities"]
    assert body["ner"]["source"] == {"request": "req-42", "index": 0}
    assert body["ner"]["model"] == "tiny-ner"
    jsonschema.validate(without_source(body), OUTPUT_SCHEMA)


def test_a_list_is_answered_in_order_with_errors_by_index(server: ServeProcess, expected: list[Any]) -> None:
    request = [{"text": TEXTS[1]}, {"title": "no text"}, "not an object", {"text": TEXTS[3], "id": 4},
               {"text": 7}, {"text": TEXTS[2]}]
    status, _, body = server.post_json(request)
    assert status == 200
    documents, errors = body["documents"], body["errors"]
    assert len(documents) == len(request)
    assert [d is None for d in documents] == [False, True, True, False, True, False]
    assert [(e["index"], e["reason"]) for e in errors] == [(1, "missing_text"), (2, "not_an_object"),
                                                          (4, "text_not_string")]
    for index, want in ((0, expected[1]), (3, expected[3]), (5, expected[2])):
        assert same_entities(documents[index]["entities"], want)
    assert [documents[i]["ner"]["source"]["index"] for i in (0, 3, 5)] == [0, 3, 5]
    for document in (documents[0], documents[3], documents[5]):
        for entity in document["entities"]:
            assert document["text"][entity["start"]:entity["end"]] == entity["text"]


def test_pre_split_words_are_annotated_as_the_words_joined_by_spaces(server: ServeProcess) -> None:
    words = [*TEXTS[2].split(), "Berlin", "", "Microsoft."]
    (want,) = annotate_in_process([tuple(words)])
    status, _, body = server.post_json({"id": "w", "words": words})
    assert status == 200
    jsonschema.validate({"id": "w", "words": words}, INPUT_SCHEMA)
    jsonschema.validate(without_source(body), OUTPUT_SCHEMA)
    assert body["words"] == words and "text" not in body
    assert body["ner"]["offsets_into"] == "joined_words"
    joined = " ".join(words)
    assert body["entities"] and same_entities(body["entities"], want)
    for entity, expected in zip(body["entities"], want, strict=True):
        assert joined[entity["start"]:entity["end"]] == entity["text"]
        assert (entity["word_start"], entity["word_end"]) == (expected["word_start"], expected["word_end"])
        assert " ".join(words[entity["word_start"]:entity["word_end"]]).find(entity["text"]) >= 0
    status, _, body = server.post_json([{"words": ["Anna", 3]}, {"text": TEXTS[0]}])
    assert [(e["index"], e["reason"]) for e in body["errors"]] == [(0, "words_not_strings")]
    assert "offsets_into" not in body["documents"][1]["ner"]
    assert all("word_start" not in entity for entity in body["documents"][1]["entities"])


def test_plain_text_body_is_one_document(server: ServeProcess, expected: list[Any]) -> None:
    status, _, body = server.request("/v1/annotate", TEXTS[2].encode(), {"Content-Type": "text/plain; charset=utf-8"})
    document = orjson.loads(body)
    assert status == 200
    assert document["text"] == TEXTS[2] and same_entities(document["entities"], expected[2])


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b'{"text": "cut', "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "text/plain", 400, "invalid_utf8"),
        (b"", "application/json", 400, "empty_value"),
        (b'{"title": "no text"}', "application/json", 422, "missing_text"),
        (b'{"text": ["a"]}', "application/json", 422, "text_not_string"),
        (b"[" + b",".join([b'{"text": "a"}'] * 51) + b"]", "application/json", 422, "too_many_documents"),
        (b'{"text": "' + b"a" * 300_000 + b'"}', "application/json", 413, "request_too_large"),
    ],
)
def test_bad_requests_get_a_clear_error(server: ServeProcess, body: bytes, content_type: str, status: int,
                                        reason: str) -> None:
    got_status, _, got = server.request("/v1/annotate", body, {"Content-Type": content_type})
    assert (got_status, orjson.loads(got)["error"]["reason"]) == (status, reason)


def test_concurrent_clients_share_engine_batches(server: ServeProcess, expected: list[Any]) -> None:
    before_batches = server.metric("ner_batch_documents_count")
    before_documents = server.metric("ner_batch_documents_sum")
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def client(number: int) -> None:
        status, _, body = server.post_json({"id": number, "text": TEXTS[number % 3]})
        with lock:
            answers.append((status, body))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 32 and all(status == 200 for status, _ in answers)
    for _, body in answers:
        assert same_entities(body["entities"], expected[body["id"] % 3])
    batches = server.metric("ner_batch_documents_count") - before_batches
    assert server.metric("ner_batch_documents_sum") - before_documents == 32
    assert batches < 32  # documents of different requests went to the engine together


def test_health_readiness_metrics_and_openapi(server: ServeProcess) -> None:
    assert server.request("/healthz")[0] == 200
    status, _, body = server.request("/readyz")
    assert status == 200 and orjson.loads(body)["checks"] == {"engine_loaded": True, "engine_ready": True}
    server.post_json({"text": TEXTS[0]})
    assert server.metric("ner_http_requests_total", {"route": "/v1/annotate", "status": "200"}) >= 1
    assert server.metric("ner_documents_annotated_total") >= 1
    assert server.metric("ner_entities_total") >= 1
    openapi = orjson.loads(server.request("/openapi.json")[2])
    # The entity of the HTTP API is the entity of the stream's output schema.
    assert openapi["components"]["schemas"]["Entity"] == OUTPUT_SCHEMA["properties"]["entities"]["items"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error_and_no_contract_violation(server: ServeProcess,
                                                                      mode: GenerationMode) -> None:
    """Every built-in check (no 5xx, documented status codes and content types, responses that
    match their schema, ...) on generated requests: valid ones, and invalid ones for negative."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        case.call_and_validate()

    check()


def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    process = ServeProcess(tmp_path / "serve.log")
    outcome: list[int] = []
    try:
        process.wait_ready()
        request = [{"text": TEXTS[3]}] * 40
        client = threading.Thread(target=lambda: outcome.append(process.post_json(request)[0]))
        client.start()
        time.sleep(0.3)  # the request is being scored
        code = process.stop()
        client.join(timeout=60)
    finally:
        process.process.kill()
    assert code == 0, process.log()
    assert outcome == [200]


def test_output_controls_shape_the_answers(tmp_path: Path, expected: list[Any]) -> None:
    controls = {"NER_OUTPUT_SHAPE": "entities", "NER_ENTITIES_FIELD": "found", "NER_LABELS": "ORG",
                "NER_LABEL_RENAME": "ORG=organization", "NER_SCORE_DIGITS": "2"}
    process = ServeProcess(tmp_path / "serve.log", env=controls)
    try:
        process.wait_ready()
        status, _, body = process.post_json([{"id": n, "text": text} for n, text in enumerate(TEXTS)])
        openapi = orjson.loads(process.request("/openapi.json")[2])
    finally:
        process.process.kill()
        process.process.wait()
    assert status == 200 and body["errors"] == []
    validator = output_validator("entities", "found")
    # The server's own OpenAPI document describes the answers it gives with these controls.
    documented = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/AnnotatedDocument",
                                                  "components": openapi["components"]})
    for index, (answer, reference) in enumerate(zip(body["documents"], expected, strict=True)):
        validator.validate(answer)
        documented.validate(answer)
        assert answer["key"] is None and answer["ner"]["source"]["index"] == index  # no document, no key
        orgs = [e for e in reference if e["label"] == "ORG"]
        assert [(e["label"], e["start"], e["end"]) for e in answer["found"]] == [
            ("organization", e["start"], e["end"]) for e in orgs]
        assert all(abs(got["score"] - want["score"]) <= 0.005 + 1e-4 and got["score"] == round(got["score"], 2)
                   for got, want in zip(answer["found"], orgs, strict=True))
    assert any(answer["found"] for answer in body["documents"])


def test_a_label_the_model_does_not_have_stops_serve(tmp_path: Path) -> None:
    process = ServeProcess(tmp_path / "serve.log", env={"NER_LABEL_RENAME": "PERSON=person"})
    try:
        code = process.process.wait(timeout=180)
    finally:
        process.process.kill()
    assert code == 3
    assert "NER_LABEL_RENAME: PERSON is not an entity type of the model (its types: " in process.log()
