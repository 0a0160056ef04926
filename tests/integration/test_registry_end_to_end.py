"""Schema Registry formats end to end: Avro and Protobuf documents produced by confluent-kafka's
serialisers, with their schemas in the real registry the project starts, through the real worker;
outputs decoded by confluent-kafka's deserialisers with the schemas the worker registered;
malformed and unknown-schema records in the dead-letter topic with their reasons."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient as ConfluentClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from tests.fixtures.kafka import (
    Record,
    committed_offsets,
    create_topics,
    read_to_end,
    read_topic,
    stream_env,
    stream_names,
)
from tests.fixtures.ports import free_port
from tests.integration.test_worker_end_to_end import produce
from tests.integration.worker_process import REPO, WorkerProcess
from worker.formats.wire import frame, write_message_indexes

pytestmark = pytest.mark.integration

TEXTS = ["Angela Merkel met the board of Siemens AG in Berlin.", "Satya Nadella visited Microsoft in Paris.",
         "Zoë Müller works for Renault in Valencia.", "Li Wei flew from Tokyo to São Paulo."]
AVRO_SCHEMA = {
    "type": "record", "name": "Article", "namespace": "news",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "body", "type": ["null", {"type": "record", "name": "Body", "fields": [
            {"name": "text", "type": "string"}, {"name": "lang", "type": "string"}]}], "default": None},
        {"name": "views", "type": "long"},
    ],
}
PROTO = """syntax = "proto3";
package news.v1;
message Article {
  string id = 1;
  Body body = 2;
  int64 views = 3;
  message Body { string text = 1; string lang = 2; }
}
"""
DOCUMENTS = 60


def compiled_class(proto_text: str, full_name: str) -> Any:
    """A message class from .proto text, compiled by protoc on its own (not the worker's code)."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "schema.proto").write_text(proto_text)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{folder}",
                        f"--descriptor_set_out={folder}/set.pb", "schema.proto"], check=True)
        files = descriptor_pb2.FileDescriptorSet.FromString(Path(folder, "set.pb").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def document(number: int) -> dict[str, Any]:
    return {"id": f"doc-{number}", "body": {"text": TEXTS[number % len(TEXTS)], "lang": "en"}, "views": 2**40 + number}


class Avro:
    name = "avro"

    def __init__(self, registry: str, topic: str) -> None:
        self.registry = registry
        self.client = ConfluentClient({"url": registry})
        self.serialize = AvroSerializer(self.client, orjson.dumps(AVRO_SCHEMA).decode())
        self.context = SerializationContext(topic, MessageField.VALUE)

    def valid(self, doc: dict[str, Any]) -> bytes:
        return bytes(self.serialize(doc, self.context))

    def malformed(self, schema_id: int) -> bytes:
        return frame(schema_id, b"\x08doc-x\x02\xff\xff\xff")  # a string longer than the bytes left

    def unknown(self) -> bytes:
        return frame(987_654_321, self.valid(document(0))[5:])

    def no_text(self) -> bytes:
        return self.valid({"id": "no-body", "body": None, "views": 1})

    def reader(self, out_topic: str) -> Callable[[bytes], dict[str, Any]]:
        deserialize = AvroDeserializer(ConfluentClient({"url": self.registry}))  # fetches by id
        context = SerializationContext(out_topic, MessageField.VALUE)
        return lambda value: dict(deserialize(value, context))


class Protobuf:
    name = "protobuf"

    def __init__(self, registry: str, topic: str) -> None:
        self.client = ConfluentClient({"url": registry})
        self.article = compiled_class(PROTO, "news.v1.Article")
        self.serialize = ProtobufSerializer(self.article, self.client, {"use.deprecated.format": False})
        self.context = SerializationContext(topic, MessageField.VALUE)

    def valid(self, doc: dict[str, Any]) -> bytes:
        return bytes(self.serialize(json_format.ParseDict(doc, self.article()), self.context))

    def malformed(self, schema_id: int) -> bytes:
        return frame(schema_id, write_message_indexes((0,)) + b"\x0a\xff\xff")  # a length past the end

    def unknown(self) -> bytes:
        return frame(987_654_321, self.valid(document(0))[5:])

    def no_text(self) -> bytes:
        return self.valid({"id": "no-body", "views": 1})

    def reader(self, out_topic: str) -> Callable[[bytes], dict[str, Any]]:
        classes: dict[int, ProtobufDeserializer] = {}

        def read(value: bytes) -> dict[str, Any]:
            schema_id = int.from_bytes(value[1:5], "big")
            if schema_id not in classes:  # the schema the worker registered, read from the registry
                registered = self.client.get_schema(schema_id)
                message = compiled_class(registered.schema_str, "news.v1.Article")
                classes[schema_id] = ProtobufDeserializer(message, {"use.deprecated.format": False})
            decoded = classes[schema_id](value, SerializationContext(out_topic, MessageField.VALUE))
            return dict(json_format.MessageToDict(decoded, preserving_proto_field_name=True,
                                                  always_print_fields_with_no_presence=True,
                                                  unquote_int64_if_possible=True))

        return read


@pytest.mark.parametrize("fmt", [Avro, Protobuf], ids=["avro", "protobuf"])
def test_schema_registry_records_through_the_worker_each_accounted_for_once(
        fmt: type[Avro | Protobuf], kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path) -> None:
    names = stream_names(f"sr-{fmt.name}")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    codec = fmt(schema_registry_url, names["in"])
    values: list[tuple[bytes, bytes]] = []
    expected_dead: dict[bytes, str] = {}
    for number in range(DOCUMENTS):
        values.append((f"key-{number}".encode(), codec.valid(document(number))))
    schema_id = int.from_bytes(values[0][1][1:5], "big")
    for key, value, reason in [
        (b"bad-bytes", codec.malformed(schema_id), f"invalid_{fmt.name}"),
        (b"unknown-id", codec.unknown(), "unknown_schema"),
        (b"plain-json", b'{"body": {"text": "not framed"}}', f"invalid_{fmt.name}"),
        (b"no-text", codec.no_text(), "missing_text"),
    ]:
        values.insert(len(values) // 2, (key, value))
        expected_dead[key] = reason
    asyncio.run(produce(kafka_bootstrap, names["in"], values))

    worker = WorkerProcess({
        **stream_env(names, kafka_bootstrap),
        "NER_INPUT_FORMAT": fmt.name, "NER_OUTPUT_FORMAT": fmt.name,
        "NER_SCHEMA_REGISTRY_URL": schema_registry_url, "NER_TEXT_FIELD": "body.text",
        "NER_COMMIT_INTERVAL_MS": "200",
    }, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        outputs = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=DOCUMENTS, timeout=180))
        dead = asyncio.run(read_topic(kafka_bootstrap, names["dead"], expect=len(expected_dead), timeout=30))
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()

    read = codec.reader(names["out"])
    by_key = dict(values)
    seen: Counter[tuple[int, int]] = Counter()
    entity_count = 0
    for record in outputs:
        body = read(record.value)
        original = document(int(record.key.decode().split("-")[1]))
        assert {k: body[k] for k in original} == original  # the input's fields, passed through
        source = body["ner"]["source"]
        assert source["topic"] == names["in"]
        seen[(source["partition"], source["offset"])] += 1
        for entity in body["entities"]:
            assert body["body"]["text"][entity["start"]:entity["end"]] == entity["text"]
        entity_count += len(body["entities"])
    assert entity_count >= DOCUMENTS  # the model found entities, not just passed records through
    assert {(r.key, _reason(r)) for r in dead} == set(expected_dead.items())
    dead_letter_schema = orjson.loads((REPO / "schemas" / "dead-letter.schema.json").read_bytes())
    for record in dead:
        assert record.value == by_key[record.key]  # the original bytes
        jsonschema.validate({k: v.decode() for k, v in record.headers}, dead_letter_schema)
        headers = dict(record.headers)
        seen[(int(headers["__connect.errors.partition"]), int(headers["__connect.errors.offset"]))] += 1
    assert len(seen) == len(values) and set(seen.values()) == {1}
    # The output schema is the input's plus entities and ner, registered under <output topic>-value.
    latest = codec.client.get_latest_version(f"{names['out']}-value")
    assert {int.from_bytes(r.value[1:5], "big") for r in outputs} == {latest.schema_id}


def _reason(record: Record) -> str:
    return dict(record.headers)["ner.error.reason"].decode()


class Forwarder:
    """A TCP forwarder to the registry, started and stopped at will: the registry as the worker
    sees it goes away and comes back while the real one keeps its schemas."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.Server | None = None

    def start(self) -> None:
        async def open_server() -> asyncio.Server:
            return await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.server = asyncio.run_coroutine_threadsafe(open_server(), self.loop).result(10)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(copy(client_reader, server_writer), copy(server_reader, client_writer),
                             return_exceptions=True)


def wait_until_registry_unreachable(worker: WorkerProcess, timeout_s: float = 120) -> None:
    """Until the worker (started, in its group, holding records) reports the registry unreachable."""
    deadline = time.monotonic() + timeout_s
    body = ""
    while True:
        try:
            status, body = worker.get("/readyz")
        except OSError:
            status = 0  # not listening yet
        if status == 503 and orjson.loads(body)["checks"].get("schema_registry_reachable") is False:
            return
        assert time.monotonic() < deadline, f"readiness never reported the registry: {body}\n{worker.log()}"
        time.sleep(0.5)


def test_an_unreachable_registry_holds_records_and_readiness_until_it_answers(
        kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path) -> None:
    names = stream_names("sr-down")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1}))
    codec = Avro(schema_registry_url, names["in"])
    values = [(f"key-{n}".encode(), codec.valid(document(n))) for n in range(10)]
    asyncio.run(produce(kafka_bootstrap, names["in"], values))
    registry = urllib.parse.urlsplit(schema_registry_url)
    forwarder = Forwarder((registry.hostname or "", registry.port or 80))
    worker = WorkerProcess({
        **stream_env(names, kafka_bootstrap),
        "NER_INPUT_FORMAT": "avro", "NER_TEXT_FIELD": "body.text",
        "NER_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{forwarder.port}{registry.path}",
        "NER_SCHEMA_REGISTRY_TIMEOUT_S": "2",
    }, tmp_path / "worker.log").start()
    try:
        wait_until_registry_unreachable(worker)
        time.sleep(3)  # several retries later: still nothing rejected, nothing written
        assert worker.metric("ner_records_dead_lettered_total") == 0
        assert asyncio.run(read_to_end(kafka_bootstrap, names["out"])) == []
        assert asyncio.run(read_to_end(kafka_bootstrap, names["dead"])) == []

        forwarder.start()
        outputs = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=len(values), timeout=120))
        worker.wait_ready(timeout=30)
        code, _ = worker.terminate()
    finally:
        worker.kill()
        forwarder.close()
    assert code == 0, worker.log()
    assert sorted(r.key for r in outputs) == sorted(k for k, _ in values)
    assert [orjson.loads(r.value)["body"]["text"] for r in outputs[:1]] == [document(0)["body"]["text"]]
    assert asyncio.run(read_to_end(kafka_bootstrap, names["dead"])) == []


def test_a_stop_while_the_registry_is_unreachable_exits_at_once_without_committing(
        kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path) -> None:
    names = stream_names("sr-stop")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1}))
    codec = Avro(schema_registry_url, names["in"])
    asyncio.run(produce(kafka_bootstrap, names["in"], [(b"k", codec.valid(document(1)))]))
    worker = WorkerProcess({
        **stream_env(names, kafka_bootstrap), "NER_INPUT_FORMAT": "avro", "NER_TEXT_FIELD": "body.text",
        "NER_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}/apis/ccompat/v7",
        "NER_SCHEMA_REGISTRY_TIMEOUT_S": "2",
    }, tmp_path / "worker.log").start()
    try:
        wait_until_registry_unreachable(worker)
        code, seconds = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    assert seconds < 15  # not the whole drain timeout: nothing was taken in
    assert asyncio.run(committed_offsets(kafka_bootstrap, names["group"], names["in"], 1)) == {0: None}
    assert asyncio.run(read_to_end(kafka_bootstrap, names["dead"])) == []
