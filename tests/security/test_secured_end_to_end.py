"""The worker annotates documents through every supported secured connection to a real broker.

Five workers run at once (one per mode, each on its own topics) to keep the suite short; each
test then checks its own: all documents annotated, offsets committed, the mechanism really used,
and no secret in the worker's output (it runs at DEBUG).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest

from tests.fixtures.kafka import read_topic, stream_env
from tests.security.broker import SecuredBroker
from tests.security.workers import (
    ALL_SECRETS,
    START_TIMEOUT_S,
    SecureWorker,
    TopicMaker,
    committed,
    connection_env,
    key_body_lines,
    leaked,
    produce,
)

pytestmark = [pytest.mark.security, pytest.mark.integration]

# (test id, connection mode, secrets and certificates from mounted files instead of env values)
MODES = [
    ("ssl-server-verified", "ssl", False),
    ("ssl-client-certificate", "mtls", True),
    ("sasl-ssl-plain", "PLAIN", False),
    ("sasl-ssl-scram-sha-256", "SCRAM-SHA-256", True),
    ("sasl-ssl-scram-sha-512", "SCRAM-SHA-512", False),
]
TEXTS = [
    "Angela Merkel met the board of Siemens AG in Berlin.",
    "Satya Nadella visited Microsoft offices in Paris and Tokyo.",
    "Anna Kowalska flew from Warsaw to São Paulo with Renault engineers.",
]
DOCUMENTS = 12


@dataclass
class ModeRun:
    names: dict[str, str]
    env: dict[str, str]
    worker: SecureWorker


@pytest.fixture(scope="module")
def mode_runs(secured_broker: SecuredBroker, secure_topics: TopicMaker,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModeRun]]:
    folder = tmp_path_factory.mktemp("secured-e2e")
    runs: dict[str, ModeRun] = {}
    try:
        for case_id, mode, from_files in MODES:
            names = secure_topics(case_id)
            values = [orjson.dumps({"id": f"{case_id}-{n}", "text": TEXTS[n % len(TEXTS)]}) for n in range(DOCUMENTS)]
            asyncio.run(produce(secured_broker.bootstrap(), names["in"], values))
            env = {**stream_env(names), **connection_env(secured_broker, mode, folder / case_id, from_files=from_files),
                   "NER_LOG_LEVEL": "DEBUG", "NER_COMMIT_INTERVAL_MS": "200"}
            runs[case_id] = ModeRun(names, env, SecureWorker(env, folder / f"{case_id}.log").start())
        yield runs
    finally:
        for run in runs.values():
            run.worker.kill()


@pytest.mark.parametrize(("case_id", "mode", "from_files"), MODES, ids=[m[0] for m in MODES])
def test_worker_annotates_documents_through_the_secured_listener(
    case_id: str, mode: str, from_files: bool, mode_runs: dict[str, ModeRun], secured_broker: SecuredBroker
) -> None:
    run = mode_runs[case_id]
    # The settings really came from where this case says.
    secret_names = {"NER_SASL_PASSWORD", "NER_SSL_KEY_PASSWORD"} & {k.removesuffix("_FILE") for k in run.env}
    assert all((name + "_FILE" in run.env) == from_files for name in secret_names)
    if mode == "mtls":
        assert {"NER_SSL_CERTFILE", "NER_SSL_KEYFILE"} <= set(run.env)

    run.worker.wait_ready(START_TIMEOUT_S)
    outputs = asyncio.run(read_topic(secured_broker.bootstrap(), run.names["out"], expect=DOCUMENTS, timeout=120))
    readiness = orjson.loads(run.worker.get("/readyz")[1])
    code, _ = run.worker.terminate()
    output = run.worker.output()
    assert code == 0, output[-3000:]

    ids = []
    entities = 0
    for record in outputs:
        assert record.value is not None
        body = orjson.loads(record.value)
        ids.append(body["id"])
        for entity in body["entities"]:
            assert body["text"][entity["start"]:entity["end"]] == entity["text"]
        entities += len(body["entities"])
    assert sorted(ids) == sorted(f"{case_id}-{n}" for n in range(DOCUMENTS))
    assert entities > 0  # annotated by the model, not just passed through
    assert readiness["checks"]["broker_reachable"] is True
    assert committed(secured_broker.bootstrap(), run.names["group"], run.names["in"]) == {0: DOCUMENTS}
    assert asyncio.run(read_topic(secured_broker.bootstrap(), run.names["dead"], expect=0)) == []
    if mode.startswith(("PLAIN", "SCRAM")):
        assert f"Authenticated as {secured_broker.users[mode].name} via {mode}" in output
    assert leaked(output, ALL_SECRETS) == []
    assert not [line for line in key_body_lines(secured_broker.pki.client.key) if line in output]
