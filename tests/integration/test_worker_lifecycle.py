"""Start-up and shutdown of the real worker process: bad settings, missing topics, health, SIGTERM."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.fixtures.documents import MODEL
from tests.fixtures.fake_vllm_server import FakeVllmProcess
from tests.fixtures.kafka import committed_offsets, create_topics, stream_env, stream_names, unique_name
from tests.fixtures.ports import free_port
from tests.integration.worker_process import REPO, WorkerProcess
from worker.stream.shutdown import SHUTDOWN_BOUND_S


def run_cli(env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli", "run"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize(("variable", "value"), [
    ("NER_MAX_BATCH_DOCUMENTS", "lots"), ("NER_DELIVERY", "at-most-once"), ("NER_MAX_BACH_DOCUMENTS", "4"),
])
def test_a_bad_setting_stops_the_worker_at_start_naming_it(variable: str, value: str) -> None:
    result = run_cli({"PATH": "/usr/bin:/bin", variable: value})
    assert result.returncode == 2
    assert variable in result.stderr
    assert result.stderr.count("\n") <= 2  # one clear line, not a traceback


@pytest.mark.integration
def test_an_unreachable_broker_fails_after_the_retry_time_naming_the_setting() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = run_cli({"PATH": "/usr/bin:/bin", "NER_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                      "NER_CONNECT_RETRY_TIMEOUT_S": "3", "NER_HTTP_PORT": "0"})
    assert result.returncode == 3, result.stderr
    assert "NER_KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    assert time.monotonic() - started < 45


@pytest.mark.integration
def test_a_missing_output_topic_fails_at_start_naming_it(kafka_bootstrap: str) -> None:
    topic_in = unique_name("lifecycle-in")
    asyncio.run(create_topics(kafka_bootstrap, {topic_in: 1}))
    result = run_cli({"PATH": "/usr/bin:/bin", "NER_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                      "NER_INPUT_TOPIC": topic_in, "NER_OUTPUT_TOPIC": unique_name("absent"), "NER_HTTP_PORT": "0"})
    assert result.returncode == 3
    assert "NER_OUTPUT_TOPIC" in result.stderr


@pytest.mark.integration
def test_health_readiness_and_sigterm_drain(kafka_bootstrap: str, tmp_path: Path) -> None:
    names = stream_names("life")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    env = {**stream_env(names, kafka_bootstrap), "NER_DRAIN_TIMEOUT_S": "5"}
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        worker.wait_ready()
        status, body = worker.get("/readyz")
        checks = orjson.loads(body)["checks"]
        assert status == 200 and checks == {"engine_loaded": True, "group_joined": True, "broker_reachable": True}
        assert worker.get("/healthz")[0] == 200
        assert worker.get("/nothing-else")[0] == 404
        assert "ner_records_received_total" in worker.get("/metrics")[1]
        code, seconds = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    assert seconds < 5 + SHUTDOWN_BOUND_S  # drain timeout plus the shutdown bound


def test_a_model_that_cannot_load_stops_the_worker_naming_the_setting(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    result = run_cli({"PATH": "/usr/bin:/bin", "NER_MODEL": str(broken), "NER_HTTP_PORT": "0",
                      "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 3, result.stderr
    assert "NER_MODEL" in result.stderr


@pytest.mark.integration
def test_sigterm_while_the_engine_hangs_exits_within_the_drain_timeout_and_its_bound(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    # Every engine request hangs (far longer than the test); the remote client's own timeout and
    # the engine timeout are longer still, so only the shutdown bound can end the process.
    server = FakeVllmProcess(MODEL, tmp_path / "server.log", "--stall-first", "1000", "--stall-s", "600").start()
    names = stream_names("hang")
    asyncio.run(create_topics(kafka_bootstrap, {names["in"]: 1, names["out"]: 1, names["dead"]: 1}))
    drain_s = 3
    worker = WorkerProcess({
        **stream_env(names, kafka_bootstrap), "NER_ENGINE": "remote", "NER_REMOTE_URL": server.url,
        "NER_MODEL": MODEL, "NER_REMOTE_TIMEOUT_S": "600", "NER_ENGINE_TIMEOUT_S": "600",
        "NER_DRAIN_TIMEOUT_S": str(drain_s),
    }, tmp_path / "worker.log")
    try:
        server.wait_healthy()
        worker.start().wait_ready()
        asyncio.run(_produce(kafka_bootstrap, names["in"], orjson.dumps({"text": "Angela Merkel met Macron."})))
        deadline = time.monotonic() + 30
        while worker.metric("ner_records_received_total") < 1:
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.1)
        time.sleep(1)  # the batch is at the engine by now, and stays there
        code, seconds = worker.terminate()
    finally:
        worker.kill()
        server.kill()
    assert code == 0, worker.log()  # a stop, not a fault: the record stays uncommitted
    assert seconds < drain_s + SHUTDOWN_BOUND_S, worker.log()
    assert "1 records were not finished within NER_DRAIN_TIMEOUT_S" in worker.log()
    assert asyncio.run(committed_offsets(kafka_bootstrap, names["group"], names["in"], 1))[0] in (None, 0)


async def _produce(bootstrap: str, topic: str, value: bytes) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
