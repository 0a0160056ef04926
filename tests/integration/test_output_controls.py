"""The output controls on the real worker and the real broker: entities-only records under
another field name, only some entity types, one renamed, a score threshold and fewer digits,
and each record's share of the engine time."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.fixtures.documents import SAMPLE_TEXTS, annotate_in_process, output_validator
from tests.fixtures.kafka import create_topics, read_topic, stream_env, stream_names
from tests.integration.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

TEXTS = [*SAMPLE_TEXTS[:3],
         "Anna Kowalska of PKN Orlen flew from Warsaw to Tokyo.",
         "Zoë Müller joined Siemens AG in Valencia; Li Wei stayed at Toyota Motor Corporation in Stockholm."]
CONTROLS = {
    "NER_OUTPUT_SHAPE": "entities",
    "NER_ENTITIES_FIELD": "found",
    "NER_LABELS": "PER,LOC",
    "NER_LABEL_RENAME": "PER=person",
    "NER_MIN_SCORE": "0.6",
    "NER_SCORE_DIGITS": "3",
}
KEPT = {"PER": "person", "LOC": "LOC"}


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    try:
        for key, value in values:
            await producer.send(topic, value, key=key, headers=[("trace-id", b"t-" + key)])
        await producer.flush()
    finally:
        await producer.stop()


def test_the_worker_applies_the_output_controls(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = stream_names("controls")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    documents = {f"key-{n}".encode(): {"id": n, "text": TEXTS[n % len(TEXTS)], "meta": {"n": n}} for n in range(60)}
    documents[b"\xffbinary-key"] = {"id": 60, "text": TEXTS[0]}
    asyncio.run(produce(kafka_bootstrap, names["in"], [(k, orjson.dumps(v)) for k, v in documents.items()]))
    # Unfiltered reference entities, scores to 9 digits; the test applies the controls itself.
    reference = dict(zip(TEXTS, annotate_in_process(TEXTS, {"NER_SCORE_DIGITS": "9"}), strict=True))

    worker = WorkerProcess({**stream_env(names, kafka_bootstrap), **CONTROLS, "NER_MAX_BATCH_DOCUMENTS": "8",
                            "NER_MAX_BATCH_WAIT_MS": "200"}, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        outputs = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=len(documents), timeout=180))
        engine_seconds = worker.metric("ner_engine_seconds_sum")
        published = {label: worker.metric("ner_entities_total", {"label": label}) for label in ("person", "LOC")}
        others = worker.metric("ner_entities_total") - sum(published.values())
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    assert len(outputs) == len(documents)

    validator = output_validator("entities", "found")
    counted = {"person": 0, "LOC": 0}
    for record in outputs:
        body = orjson.loads(record.value)
        validator.validate(body)
        assert set(body) <= {"key", "key_base64", "found", "ner"}  # no document, no "entities"
        assert record.key is not None and dict(record.headers)["trace-id"] == b"t-" + record.key
        if record.key == b"\xffbinary-key":
            assert body["key"] is None and body["key_base64"] == "/2JpbmFyeS1rZXk="
        else:
            assert body["key"] == record.key.decode()
        text = documents[record.key]["text"]
        wanted = [e for e in reference[text] if e["label"] in KEPT and e["score"] >= 0.6]
        assert [(e["label"], e["start"], e["end"]) for e in body["found"]] == [
            (KEPT[e["label"]], e["start"], e["end"]) for e in wanted]
        for got, want in zip(body["found"], wanted, strict=True):
            assert got["score"] == round(got["score"], 3)
            assert abs(got["score"] - want["score"]) <= 0.0005 + 1e-6  # rounding plus float noise
            assert got["text"] == text[got["start"]:got["end"]]
            counted[got["label"]] += 1
    assert counted["person"] > 0 and counted["LOC"] > 0  # the kept types are found at all
    assert any(e["label"] == "ORG" and e["score"] >= 0.6 for entities in reference.values() for e in entities)
    assert published == counted and others == 0  # the metrics count what was published

    # Each record carries its share of its batch's engine time: together, the engine time.
    shares_ms = sum(orjson.loads(record.value)["ner"]["timings"]["engine_ms"] for record in outputs)
    assert shares_ms == pytest.approx(engine_seconds * 1000, rel=0.01, abs=0.05)


def test_a_label_the_model_does_not_have_stops_the_start(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = stream_names("controls-bad")
    worker = WorkerProcess({**stream_env(names, kafka_bootstrap), "NER_LABELS": "PER,DATE"},
                           tmp_path / "worker.log").start()
    assert worker.process is not None
    try:
        code = worker.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise
    assert code != 0
    assert "NER_LABELS: DATE is not an entity type of the model (its types: " in worker.log()
