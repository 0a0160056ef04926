"""Poison and fuzz: 10,000 adversarial records through the running worker on the real broker.

Zero crashes, every record accounted for once in output ∪ dead letter, and each dead letter's
reason equal to what an independent oracle (the standard library's json module and explicit
rules) expects for the record.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.fixtures.kafka import create_topics, read_topic, stream_env, stream_names
from tests.integration.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

RECORDS = 10_000
MAX_TEXT = 5_000
MAX_RECORD = 2_000_000
MAX_DEPTH = 16


def oracle(value: bytes) -> str | None:
    """The dead-letter reason the worker must give, or None if the record must be annotated."""
    if not value:
        return "empty_value"
    if len(value) > MAX_RECORD:
        return "too_large"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        body = json.loads(text)
        # A lone surrogate escape cannot become UTF-8 again: it is not valid JSON text for us.
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError, UnicodeEncodeError):
        return "invalid_json"
    if not isinstance(body, dict):
        return "not_an_object"
    if _depth(body) > MAX_DEPTH:
        return "too_deep"
    if "text" not in body:
        return "missing_text"
    if not isinstance(body["text"], str):
        return "text_not_string"
    if len(body["text"]) > MAX_TEXT:
        return "too_large"
    return None


def _depth(node: object) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def adversarial(rng: random.Random, number: int) -> bytes:
    kind = number % 14
    if kind == 0:
        return rng.randbytes(rng.randint(1, 300))
    if kind == 1:
        whole = orjson.dumps({"text": "Anna Schmidt lives in Berlin.", "id": number})
        return whole[: rng.randint(1, len(whole) - 1)]
    if kind == 2:
        depth = rng.choice([MAX_DEPTH + 1, 200, 5000])
        return b'{"text": "x", "n": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 3:
        return orjson.dumps({"text": "y" * (MAX_TEXT + rng.randint(1, 50_000))})
    if kind == 4:
        return orjson.dumps({"text": rng.choice([1, 2.5, None, True, [], {}, ["a"]])})
    if kind == 5 and number % 700 == 5:
        return b'{"text": "' + b"z" * 10_000_000 + b'"}'  # 10 MB: over the record limit
    if kind == 6:
        return orjson.dumps({"text": ""})
    if kind == 7:
        return orjson.dumps({"text": "NUL\x00in the middle of Anna\x00Schmidt", "id": number})
    if kind == 8:
        return b'{"text": "lone surrogate \\ud800 here"}'
    if kind == 9:
        return '{"text": "CESU \ud800"}'.encode("utf-8", "surrogatepass")
    if kind == 10:
        return orjson.dumps({"\x00junk\ufffe": 1, "text": "Pierre Dubois visited Renault.", "🔑": [1, {"a": None}]})
    if kind == 11:
        return rng.choice([b"null", b"42", b'"text"', b"[]", b"true", b" ", b"\xef\xbb\xbf{}"])
    if kind == 12:
        return orjson.dumps({"body": "no text field"})
    words = ["Zoë", "Müller", "東京", "مرحبا", "🎉", "\u200b", "\t", "\n", "Siemens", "Paris", "  "]
    return orjson.dumps({"text": "".join(rng.choice(words) for _ in range(rng.randint(0, 60)))})


def test_ten_thousand_adversarial_records(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(10_000)
    names = stream_names("poison")
    asyncio.run(_create_big_input(kafka_bootstrap, names["in"]))
    asyncio.run(create_topics(kafka_bootstrap, {names["out"]: 2, names["dead"]: 1}))
    values = [adversarial(rng, n) for n in range(RECORDS)]
    expected = [oracle(v) for v in values]
    asyncio.run(_produce(kafka_bootstrap, names["in"], values, rng))

    worker = WorkerProcess({
        **stream_env(names, kafka_bootstrap),
        "NER_MAX_TEXT_CHARS": str(MAX_TEXT), "NER_MAX_RECORD_BYTES": str(MAX_RECORD),
        "NER_MAX_JSON_DEPTH": str(MAX_DEPTH),
    }, tmp_path / "worker.log").start()
    n_dead = sum(1 for reason in expected if reason is not None)
    try:
        outputs = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=RECORDS - n_dead, timeout=600))
        dead = asyncio.run(read_topic(kafka_bootstrap, names["dead"], expect=n_dead, timeout=60))
        assert worker.process is not None and worker.process.poll() is None, "the worker crashed"
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()

    got: dict[int, str | None] = {}
    for record in outputs:
        source = orjson.loads(record.value or b"")["ner"]["source"]
        assert source["offset"] not in got, "duplicate"
        got[source["offset"]] = None
    for record in dead:
        headers = {k: v for k, v in record.headers}
        offset = int(headers["__connect.errors.offset"])
        assert offset not in got, "duplicate"
        got[offset] = headers["ner.error.reason"].decode()
        if "ner.error.value_dropped" not in headers:
            assert record.value == values[offset]
    assert len(got) == RECORDS
    mismatches = [(o, expected[o], got[o]) for o in range(RECORDS) if expected[o] != got[o]]
    assert not mismatches, mismatches[:20]
    print(Counter(reason or "annotated" for reason in got.values()))


async def _create_big_input(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(16 * 2**20)})])
    finally:
        await admin.close()
    await create_topics(bootstrap, {topic: 1})  # waits until the partition has a leader


async def _produce(bootstrap: str, topic: str, values: list[bytes], rng: random.Random) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=16 * 2**20, linger_ms=10)
    await producer.start()
    try:
        for number, value in enumerate(values):
            key = rng.choice([None, b"", rng.randbytes(8), str(number).encode()])
            headers = [("junk", rng.randbytes(4)), ("\u00e9t\u00e9", b"")] if number % 3 == 0 else []
            await producer.send(topic, value, key=key, headers=headers, partition=0)
        await producer.flush()
    finally:
        await producer.stop()
