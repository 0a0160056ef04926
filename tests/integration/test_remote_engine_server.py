"""NER_ENGINE=remote against a real HTTP server speaking vLLM's /pooling JSON (backed by the
transformers engine on the shipped model), killed and restarted while work goes on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tests.fixtures.documents import MODEL, annotate_in_process, same_entities
from tests.fixtures.fake_vllm_server import FakeVllmProcess
from tests.fixtures.kafka import create_topics, read_topic, stream_env, stream_names
from tests.integration.worker_process import REPO, WorkerProcess
from worker.engine import EngineError
from worker.engine.hf import TransformersEngine
from worker.engine.remote import RemoteEngine
from worker.text.tokenize import DocumentTokenizer, EncodedText

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday to discuss the future of Airbus.",
    "Satya Nadella said Microsoft will open a new office in Berlin next spring.",
    "Prof. Zoë Müller-Lüdenscheidt joined Siemens AG after ten years at the Universität Wien. 🏅",
    " ".join(f"Hans Schmidt moved from Munich to Stockholm to work for Ericsson in year {n}." for n in range(40)),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeVllmProcess]:
    process = FakeVllmProcess(MODEL, tmp_path_factory.mktemp("fake-vllm") / "server.log").start()
    try:
        process.wait_healthy()
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="module")
def windows() -> list[list[int]]:
    tokenizer = DocumentTokenizer.from_pretrained(MODEL, max_length=64, stride=16)
    encoded = [item for item in tokenizer.encode(TEXTS) if isinstance(item, EncodedText)]
    result = [window for doc in encoded for window in doc.windows]
    assert len(result) > len(TEXTS)  # the long text spans several windows
    return result


@pytest.fixture(scope="module")
def reference(windows: list[list[int]]) -> list[np.ndarray[Any, Any]]:
    async def score() -> list[np.ndarray[Any, Any]]:
        engine = TransformersEngine(MODEL, device="cpu")
        await engine.start()
        try:
            return await engine.classify(windows)
        finally:
            await engine.close()

    return asyncio.run(score())


def remote(url: str, **options: Any) -> RemoteEngine:
    settings: dict[str, Any] = {"timeout_s": 10.0, "max_retries": 5, "backoff_s": 0.1, "backoff_max_s": 1.0,
                                "health_interval_s": 0.2, "request_windows": 4}
    settings.update(options)
    return RemoteEngine(url, MODEL, **settings)


@pytest.mark.parametrize("encoding", ["base64", "float"])
def test_remote_scores_equal_the_transformers_engine(server: FakeVllmProcess, windows: list[list[int]],
                                                     reference: list[np.ndarray[Any, Any]], encoding: str) -> None:
    async def scenario() -> list[np.ndarray[Any, Any]]:
        engine = remote(server.url, encoding=encoding)
        await engine.start()
        try:
            assert engine.ready()
            return await engine.classify(windows)
        finally:
            await engine.close()

    scores = asyncio.run(scenario())
    assert len(scores) == len(reference)
    for got, want in zip(scores, reference, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_remote_annotator_finds_the_same_entities_as_the_transformers_one(server: FakeVllmProcess) -> None:
    local = annotate_in_process(TEXTS)
    over_http = annotate_in_process(TEXTS, {"NER_ENGINE": "remote", "NER_REMOTE_URL": server.url})
    spans = [[(e["label"], e["start"], e["end"]) for e in entities] for entities in local]
    assert [[(e["label"], e["start"], e["end"]) for e in entities] for entities in over_http] == spans
    for got, want in zip(over_http, local, strict=True):  # scores equal up to float noise of other batching
        assert same_entities(got, want)
    assert any(entities for entities in local)  # the shipped model finds entities at all


def test_server_killed_and_restarted_mid_stream_loses_and_skips_nothing(
    tmp_path: Path, windows: list[list[int]], reference: list[np.ndarray[Any, Any]]
) -> None:
    # A server of its own: this test kills it. After the restart its first answers are 500s.
    server = FakeVllmProcess(MODEL, tmp_path / "server.log").start()
    batches = [windows[i % len(windows): i % len(windows) + 3] for i in range(30)]
    readiness: list[bool] = []
    results: list[list[np.ndarray[Any, Any]]] = []

    async def scenario() -> None:
        await asyncio.to_thread(server.wait_healthy)
        engine = remote(server.url, max_retries=60)
        await engine.start()

        async def stream() -> None:
            for batch in batches:  # one batch after another, as the worker sends them
                results.append(await engine.classify(batch))

        async def watch() -> None:
            while True:
                if not readiness or readiness[-1] != engine.ready():
                    readiness.append(engine.ready())
                await asyncio.sleep(0.05)

        streaming, watching = asyncio.create_task(stream()), asyncio.create_task(watch())
        try:
            while len(results) < 5:
                await asyncio.sleep(0.01)
            server.kill()
            await _until(lambda: not engine.ready(), 10)
            done_while_down = len(results)
            await asyncio.sleep(1.0)
            assert len(results) <= done_while_down + 1  # at most the batch answered just before the kill
            assert not streaming.done()
            server.start("--fail-first", "2")
            await asyncio.to_thread(server.wait_healthy)
            await _until(engine.ready, 10)
            await asyncio.wait_for(streaming, 120)
        finally:
            watching.cancel()
            streaming.cancel()
            await engine.close()

    try:
        asyncio.run(scenario())
    finally:
        server.kill()
    assert readiness[:3] == [True, False, True]
    assert len(results) == len(batches)
    for batch, scores in zip(batches, results, strict=True):
        for window, got in zip(batch, scores, strict=True):
            np.testing.assert_allclose(got, reference[windows.index(window)], atol=1e-5)


def test_retries_exhausted_raise_engine_error_and_the_batch_can_be_sent_again(
    tmp_path: Path, windows: list[list[int]], reference: list[np.ndarray[Any, Any]]
) -> None:
    server = FakeVllmProcess(MODEL, tmp_path / "server.log").start()

    async def scenario() -> None:
        await asyncio.to_thread(server.wait_healthy)
        engine = remote(server.url, max_retries=2, backoff_max_s=0.2, health_interval_s=60)
        await engine.start()
        try:
            server.kill()
            with pytest.raises(EngineError, match="failed 3 times"):
                await engine.classify(windows[:2])
            assert not engine.ready()
            server.start()
            await asyncio.to_thread(server.wait_healthy)
            scores = await engine.classify(windows[:2])  # the caller kept the batch: nothing lost
            assert engine.ready()
            for got, want in zip(scores, reference[:2], strict=True):
                np.testing.assert_allclose(got, want, atol=1e-5)
        finally:
            await engine.close()

    try:
        asyncio.run(scenario())
    finally:
        server.kill()


def test_offline_annotate_stops_cleanly_when_the_server_dies_and_resumes(tmp_path: Path) -> None:
    server = FakeVllmProcess(MODEL, tmp_path / "server.log").start()
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    count = 2000
    source.write_bytes(b"\n".join(orjson.dumps({"id": n, "text": TEXTS[n % 3]}) for n in range(count)) + b"\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NER_")}
    environ.update({"PYTHONPATH": str(REPO), "NER_MODEL": MODEL, "NER_ENGINE": "remote", "NER_REMOTE_URL": server.url,
                    "NER_REMOTE_MAX_RETRIES": "1"})
    command = [sys.executable, "-m", "worker.cli", "annotate", str(source), "-o", str(output)]
    try:
        server.wait_healthy()
        # Small batches, so that the server dies while most of the file is still to do.
        first = subprocess.Popen([*command, "--batch-documents", "4"], cwd=REPO, env=environ,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not output.exists() or output.stat().st_size == 0:
            assert first.poll() is None and time.monotonic() < deadline, "the run ended before the server was killed"
            time.sleep(0.01)
        server.kill()
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == 1, stderr.decode()
        assert "the engine failed after line" in stderr.decode() and "run the same command again" in stderr.decode()
        server.start()
        server.wait_healthy()
        second = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, timeout=600)
        assert second.returncode == 0, second.stderr.decode()
        assert "resuming after line" in second.stderr.decode()
    finally:
        server.kill()
    ids = [orjson.loads(line)["id"] for line in output.read_bytes().splitlines()]
    assert ids == list(range(count))  # every document once, in order: none lost, none skipped


@pytest.mark.integration
def test_stream_worker_rides_out_a_server_restart(kafka_bootstrap: str, tmp_path: Path) -> None:
    server = FakeVllmProcess(MODEL, tmp_path / "server.log").start()
    names = stream_names("remote")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    documents = [{"id": n, "text": TEXTS[n % len(TEXTS)]} for n in range(240)]
    worker = WorkerProcess({
        **stream_env(names, kafka_bootstrap),
        "NER_ENGINE": "remote", "NER_REMOTE_URL": server.url, "NER_REMOTE_MAX_RETRIES": "40", "NER_MODEL": MODEL,
        "NER_MAX_BATCH_DOCUMENTS": "8", "NER_COMMIT_INTERVAL_MS": "200",
    }, tmp_path / "worker.log")
    try:
        server.wait_healthy()
        worker.start().wait_ready()
        asyncio.run(_produce(kafka_bootstrap, names["in"], documents[:120]))
        asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=60, timeout=120))
        server.kill()
        asyncio.run(_produce(kafka_bootstrap, names["in"], documents[120:]))
        deadline = time.monotonic() + 30
        while worker.get("/readyz")[0] != 503:
            assert time.monotonic() < deadline, "readiness stayed true with the vLLM server down"
            time.sleep(0.2)
        assert '"engine_loaded":false' in worker.get("/readyz")[1]
        server.start()
        server.wait_healthy()
        worker.wait_ready(timeout=60)
        outputs = asyncio.run(read_topic(kafka_bootstrap, names["out"], expect=len(documents), timeout=240))
        code, _ = worker.terminate()
    finally:
        worker.kill()
        server.kill()
    assert code == 0, worker.log()
    ids = [orjson.loads(record.value)["id"] for record in outputs]
    assert sorted(ids) == list(range(len(documents)))  # every record once: none lost, none skipped


async def _produce(bootstrap: str, topic: str, documents: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for document in documents:
            await producer.send(topic, orjson.dumps(document), key=str(document["id"]).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _until(condition: Any, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
