"""The worker end to end on the real broker: 1,000 documents in, every one accounted for once."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import committed_offsets, create_topics, read_topic, stream_env, stream_names
from tests.integration.worker_process import REPO, WorkerProcess

pytestmark = pytest.mark.integration

SCHEMAS = {
    name: json.loads((REPO / "schemas" / f"{name}.schema.json").read_text())
    for name in ("input", "output", "dead-letter")
}
MALFORMED = [
    (b"\xff\xfe not utf-8", "invalid_utf8"),
    (b'{"text": "cut short', "invalid_json"),
    (b'["an", "array"]', "not_an_object"),
    (b'{"title": "no text"}', "missing_text"),
    (b'{"text": 12345}', "text_not_string"),
    (b'{"words": ["pre-split", 7]}', "words_not_strings"),
]
FIRST = ["Angela Merkel", "João Silva", "Zoë Müller", "Pierre Dubois", "Anna Kowalska", "Li Wei", "Satya Nadella"]
ORGS = ["Siemens AG", "Microsoft", "Renault", "Innovatech Solutions", "Toyota Motor Corporation", "PKN Orlen"]
PLACES = ["Paris", "Berlin", "São Paulo", "Warsaw", "Tokyo", "Valencia", "Stockholm"]


def make_document(rng: random.Random, number: int) -> dict[str, Any]:
    sentences = []
    for _ in range(rng.randint(1, 12)):  # some documents exceed one model window
        sentences.append(
            f"{rng.choice(FIRST)} met  the board of {rng.choice(ORGS)} in {rng.choice(PLACES)}"
            f" on day {rng.randint(1, 28)}."
        )
    if rng.random() < 0.1:
        sentences.append("Emoji 🎉 and tabs\tand\nnewlines, zero\u200bwidth.")
    if number % 10 == 3:  # pre-split input: the words instead of the text
        return {"id": f"doc-{number}", "words": " ".join(sentences).split(), "meta": {"n": number}}
    return {"id": f"doc-{number}", "text": " ".join(sentences), "meta": {"n": number}}


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=10)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key, headers=[("trace-id", key)])
        await producer.flush()
    finally:
        await producer.stop()


def test_thousand_documents_with_malformed_ones_are_each_accounted_for_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rng = random.Random(4)
    names = stream_names("e2e")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 3, names["out"]: 3, names["dead"]: 1}))
    values: list[tuple[bytes, bytes]] = []
    expected_reasons: Counter[str] = Counter()
    for number in range(1000):
        if number % 20 == 7:
            value, reason = MALFORMED[(number // 20) % len(MALFORMED)]
            expected_reasons[reason] += 1
        else:
            document = make_document(rng, number)
            jsonschema.validate(document, SCHEMAS["input"])
            value = orjson.dumps(document)
        values.append((f"key-{number}".encode(), value))
    asyncio.run(produce(kafka_bootstrap, names["in"], values))

    worker = WorkerProcess(
        {
            **stream_env(names, kafka_bootstrap),
            "NER_MAX_LENGTH": "64",
            "NER_STRIDE": "16",
            "NER_COMMIT_INTERVAL_MS": "200",
        },
        tmp_path / "worker.log",
    ).start()
    try:
        worker.wait_ready()
        outputs = asyncio.run(
            read_topic(kafka_bootstrap, names["out"], expect=1000 - sum(expected_reasons.values()), timeout=240)
        )
        dead = asyncio.run(
            read_topic(kafka_bootstrap, names["dead"], expect=sum(expected_reasons.values()), timeout=30)
        )
        metrics = {
            "received": worker.metric("ner_records_received_total"),
            "published": worker.metric("ner_records_published_total"),
            "dead": {r: worker.metric("ner_records_dead_lettered_total", {"reason": r}) for r in expected_reasons},
            "entities": worker.metric("ner_entities_total"),
        }
        code, seconds = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()

    # Every input offset exactly once in output ∪ dead letter.
    seen: Counter[tuple[int, int]] = Counter()
    entity_count = pre_split = 0
    by_key = dict(values)
    for record in outputs:
        body = orjson.loads(record.value)
        jsonschema.validate(body, SCHEMAS["output"])
        source = body["ner"]["source"]
        assert source["topic"] == names["in"]
        seen[(source["partition"], source["offset"])] += 1
        original = orjson.loads(by_key[record.key])
        assert {k: body[k] for k in original} == original  # passed through untouched
        assert dict(record.headers)["trace-id"] == record.key
        assert record.partition == source["partition"]  # output partition follows the input partition
        text = body["text"] if "text" in body else " ".join(body["words"])
        assert body["ner"].get("offsets_into") == (None if "text" in body else "joined_words")
        for entity in body["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            if "words" in body:  # the entity begins in its first word and ends in its last
                first, last = entity["word_start"], entity["word_end"] - 1
                starts = [len(" ".join(body["words"][:index])) + bool(index) for index in (first, last)]
                assert starts[0] <= entity["start"] < starts[0] + len(body["words"][first])
                assert starts[1] < entity["end"] <= starts[1] + len(body["words"][last])
        pre_split += "words" in body
        entity_count += len(body["entities"])
    dead_reasons: Counter[str] = Counter()
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        jsonschema.validate(headers, SCHEMAS["dead-letter"])
        assert by_key[record.key] == record.value  # original bytes untouched
        seen[(int(headers["__connect.errors.partition"]), int(headers["__connect.errors.offset"]))] += 1
        dead_reasons[headers["ner.error.reason"]] += 1
    assert len(seen) == 1000 and set(seen.values()) == {1}
    assert dead_reasons == expected_reasons
    assert pre_split > 80
    assert entity_count > 1000  # the model finds entities, not just passes records through

    # The worker's own counters equal what the topics hold.
    assert metrics["received"] == 1000
    assert metrics["published"] == len(outputs)
    assert metrics["dead"] == dict(expected_reasons)
    assert metrics["entities"] == entity_count

    # SIGTERM drained and committed everything before leaving the group.
    ends = Counter(partition for partition, _ in seen)
    assert asyncio.run(committed_offsets(kafka_bootstrap, names["group"], names["in"], 3)) == dict(ends)
    assert seconds < 30


def test_outputs_of_each_partition_keep_input_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = stream_names("order")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    values = [(f"k{n}".encode(), orjson.dumps({"text": f"Anna Schmidt visited Berlin {n} times."})) for n in range(300)]
    asyncio.run(produce(kafka_bootstrap, names["in"], values))
    worker = WorkerProcess(
        {
            **stream_env(names, kafka_bootstrap),
            "NER_MAX_BATCH_DOCUMENTS": "7",
            "NER_MAX_CONCURRENT_BATCHES": "4",
        },
        tmp_path / "worker.log",
    ).start()
    try:
        outputs = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=300, timeout=180))
    finally:
        worker.terminate()
        worker.kill()
    last: dict[int, int] = {}
    for record in sorted(outputs, key=lambda r: (r.partition, r.offset)):
        source = orjson.loads(record.value)["ner"]["source"]
        assert source["offset"] > last.get(source["partition"], -1)
        last[source["partition"]] = source["offset"]
    assert len(outputs) == 300
