"""Hostile input is bounded, and the HTTP endpoints expose nothing but health, readiness and metrics.

One worker (SASL_SSL with SCRAM-SHA-256, small limits, HTTP on 127.0.0.2) reads one document per
limit plus one harmless document. Each limit sends its document to the dead letter with its
reason, the original bytes untouched; the harmless one is annotated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Iterator

import orjson
import pytest

from tests.fixtures.kafka import Record, read_topic, stream_env
from tests.security.broker import SecuredBroker
from tests.security.workers import (
    START_TIMEOUT_S,
    SecureWorker,
    TopicMaker,
    connection_env,
    produce,
)
from worker.settings import Settings

pytestmark = [pytest.mark.security, pytest.mark.integration]

LIMITS = {"NER_MAX_RECORD_BYTES": "4096", "NER_MAX_TEXT_CHARS": "1000", "NER_MAX_JSON_DEPTH": "8",
          "NER_MAX_DOCUMENT_TOKENS": "120", "NER_MAX_ENTITIES_PER_DOCUMENT": "2"}
# id -> (document, dead-letter reason, words of the dead-letter message)
HOSTILE: dict[str, tuple[dict[str, object], str, str]] = {
    "record-bytes": ({"text": "Short.", "padding": "x" * 5000}, "too_large", "the limit is 4096"),
    "text-chars": ({"text": "word " * 250}, "too_large", "characters; the limit is 1000"),
    "json-depth": ({"text": "Deep.", "nested": [[[[[[[[[["deep"]]]]]]]]]]}, "too_deep", "deeper than 8"),
    "document-tokens": ({"text": "a, " * 100}, "too_large", "more than the limit of 120"),
    "entities": ({"text": "Angela Merkel, Satya Nadella, Olaf Scholz and Anna Kowalska met in Berlin, Paris, "
                          "Tokyo and Warsaw."}, "too_many_entities", "the limit is 2"),
}
HARMLESS = {"text": "ok"}
HTTP_HOST = "127.0.0.2"  # a loopback address that is not 127.0.0.1


@dataclasses.dataclass
class LimitedRun:
    worker: SecureWorker
    dead: list[Record]
    outputs: list[Record]
    values: dict[bytes, bytes]


@pytest.fixture(scope="module")
def limited(secured_broker: SecuredBroker, secure_topics: TopicMaker,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedRun]:
    folder = tmp_path_factory.mktemp("hostile")
    names = secure_topics("hostile")
    documents = {name.encode(): orjson.dumps(doc) for name, (doc, _, _) in HOSTILE.items()}
    documents[b"harmless"] = orjson.dumps(HARMLESS)
    asyncio.run(produce(secured_broker.bootstrap(), names["in"], documents))
    env = {**stream_env(names), **connection_env(secured_broker, "SCRAM-SHA-256", folder), **LIMITS,
           "NER_HTTP_HOST": HTTP_HOST}
    worker = SecureWorker(env, folder / "worker.log").start()
    try:
        worker.wait_ready(START_TIMEOUT_S)
        dead = asyncio.run(read_topic(secured_broker.bootstrap(), names["dead"], expect=len(HOSTILE), timeout=120))
        outputs = asyncio.run(read_topic(secured_broker.bootstrap(), names["out"], expect=1, timeout=120))
        yield LimitedRun(worker, dead, outputs, documents)
    finally:
        worker.kill()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_each_limit_dead_letters_its_document_with_the_reason(case: str, limited: LimitedRun) -> None:
    _, reason, message = HOSTILE[case]
    (record,) = [r for r in limited.dead if r.key == case.encode()]
    headers = {k: v.decode() for k, v in record.headers}
    assert headers["ner.error.reason"] == reason
    assert message in headers["ner.error.message"]
    assert record.value == limited.values[case.encode()]  # the original bytes, untouched


def test_harmless_input_passes_and_the_counters_match(limited: LimitedRun) -> None:
    (output,) = limited.outputs
    assert output.key == b"harmless" and output.value is not None
    assert "entities" in orjson.loads(output.value)
    assert len(limited.dead) == len(HOSTILE)
    for reason in {r for _, r, _ in HOSTILE.values()}:
        expected = sum(r == reason for _, r, _ in HOSTILE.values())
        assert limited.worker.metric("ner_records_dead_lettered_total", {"reason": reason}) == expected


def test_every_limit_has_a_safe_default() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    for variable in LIMITS:
        value = defaults[variable.removeprefix("NER_").lower()]
        assert isinstance(value, int) and 0 < value <= 16 * 1024 * 1024, (variable, value)


def test_http_listens_on_the_configured_address_only(limited: LimitedRun) -> None:
    assert limited.worker.request("GET", "/healthz", host=HTTP_HOST)[0] == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", limited.worker.port), timeout=5).close()


@pytest.mark.parametrize("path", ["/", "/admin", "/env", "/settings", "/debug/pprof", "/metrics/extra",
                                  "/healthz/../metrics", "/../../etc/passwd", "/readyz.json", "/METRICS"])
def test_nothing_else_is_served(path: str, limited: LimitedRun) -> None:
    assert limited.worker.request("GET", path) == (404, "not found\n")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"])
@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/healthz", "/anything"])
def test_only_get_and_head_are_allowed(method: str, path: str, limited: LimitedRun) -> None:
    assert limited.worker.request(method, path)[0] == 405


def test_the_three_endpoints_answer(limited: LimitedRun) -> None:
    assert limited.worker.request("GET", "/healthz")[0] == 200
    status, body = limited.worker.request("GET", "/readyz")
    assert status == 200 and orjson.loads(body)["status"] == "ok"
    status, body = limited.worker.request("GET", "/metrics?format=anything")
    assert status == 200 and "ner_records_received_total" in body
    assert limited.worker.request("HEAD", "/metrics") == (200, "")


def test_an_oversized_request_line_is_refused_and_the_server_goes_on(limited: LimitedRun) -> None:
    with socket.create_connection((HTTP_HOST, limited.worker.port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_all(sock)  # the server closes the connection after its answer
    assert answer.split(b"\r\n", 1)[0] in (b"HTTP/1.0 400 Bad Request", b"HTTP/1.1 400 Bad Request")
    assert limited.worker.request("GET", "/healthz")[0] == 200


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass  # closed with unread request bytes pending: also no answer
    return b"".join(chunks)

