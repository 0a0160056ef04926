"""Connection failures are clear and safe, and no secret ever shows in any output.

Each case starts the real worker at DEBUG with a known value in every secret setting (the SASL
password, the client key's password; from env values or mounted files), lets it retry for
NER_CONNECT_RETRY_TIMEOUT_S, and records every /readyz and /metrics answer meanwhile. The cases
run side by side (each retries while the others load their engine) to keep the suite short.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.fixtures.kafka import stream_env
from tests.fixtures.ports import free_port
from tests.security.broker import SecuredBroker
from tests.security.workers import (
    ALL_SECRETS,
    START_TIMEOUT_S,
    WRONG_PASSWORD,
    SecureWorker,
    TopicMaker,
    WatchedRun,
    client_certificate_env,
    committed,
    key_body_lines,
    leaked,
    produce,
    secret_setting,
)

pytestmark = [pytest.mark.security, pytest.mark.integration]

RETRY_S = 8
PARALLEL_STARTS = 4
EnvMaker = Callable[[SecuredBroker, Path], dict[str, str]]


def _sasl(mechanism: str, *, from_file: bool) -> EnvMaker:
    def make(broker: SecuredBroker, folder: Path) -> dict[str, str]:
        return {"NER_SECURITY_PROTOCOL": "SASL_SSL", "NER_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap("SASL_SSL"),
                "NER_SASL_MECHANISM": mechanism, "NER_SASL_USERNAME": broker.users[mechanism].name,
                "NER_SSL_CAFILE": str(broker.pki.ca),
                **secret_setting("NER_SASL_PASSWORD", WRONG_PASSWORD, folder, from_file),
                # The listener asks for no client certificate; the key password is here to be searched for.
                **client_certificate_env(broker, folder, from_files=not from_file)}
    return make


def _ssl(listener: str, *, unknown_ca: bool = False, expired_client: bool = False) -> EnvMaker:
    def make(broker: SecuredBroker, folder: Path) -> dict[str, str]:
        return {"NER_SECURITY_PROTOCOL": "SSL", "NER_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap(listener),
                "NER_SSL_CAFILE": str(broker.pki.unknown_ca if unknown_ca else broker.pki.ca),
                **client_certificate_env(broker, folder, from_files=True, expired=expired_client)}
    return make


def _unreachable(broker: SecuredBroker, folder: Path) -> dict[str, str]:
    nobody = f"127.0.0.1:{free_port()}"
    return {**_sasl("PLAIN", from_file=False)(broker, folder), "NER_KAFKA_BOOTSTRAP_SERVERS": nobody}


# (test id, settings, words the one line naming the cause must contain)
CASES: list[tuple[str, EnvMaker, str]] = [
    ("wrong-password-plain", _sasl("PLAIN", from_file=False), "SASL authentication failed"),
    ("wrong-password-scram-sha-512", _sasl("SCRAM-SHA-512", from_file=True), "SASL authentication failed"),
    ("unknown-ca", _ssl("TLS", unknown_ca=True), "unknown CA"),
    ("expired-broker-certificate", _ssl("EXPIRED"), "certificate has expired"),
    ("expired-client-certificate", _ssl("MTLS", expired_client=True), "refused the TLS handshake"),
    ("mismatched-host-certificate", _ssl("WRONGHOST"), "host name mismatch"),
    ("unreachable-broker", _unreachable, "connection refused"),
]
# A log line starts with its RFC 3339 UTC time, then the level.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", re.MULTILINE)


@pytest.fixture(scope="module")
def failing_input(secured_broker: SecuredBroker, secure_topics: TopicMaker) -> dict[str, str]:
    """Topics with unprocessed documents waiting, which no failing worker may mark as done."""
    names = secure_topics("failing")
    asyncio.run(produce(secured_broker.bootstrap(), names["in"],
                        [orjson.dumps({"text": f"Anna Schmidt visited Berlin {n} times."}) for n in range(5)]))
    return names


@pytest.fixture(scope="module")
def failed_runs(secured_broker: SecuredBroker, failing_input: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, WatchedRun]]:
    folder = tmp_path_factory.mktemp("connect-failures")
    runs: dict[str, WatchedRun] = {}
    try:
        for case_id, make_env, _ in CASES:
            while sum(run.exit_code is None for run in runs.values()) >= PARALLEL_STARTS:
                next(run for run in runs.values() if run.exit_code is None).wait()
            env = {**stream_env({**failing_input, "group": f"{failing_input['group']}-{case_id}"}),
                   **make_env(secured_broker, folder / case_id),
                   "NER_LOG_LEVEL": "DEBUG", "NER_CONNECT_RETRY_TIMEOUT_S": str(RETRY_S)}
            runs[case_id] = WatchedRun(SecureWorker(env, folder / f"{case_id}.log")).start()
        for run in runs.values():
            run.wait()
        yield runs
    finally:
        for run in runs.values():
            run.worker.kill()


@pytest.mark.parametrize(("case_id", "cause"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_failure_is_named_once_keeps_readiness_false_and_exits_non_zero(
    case_id: str, cause: str, failed_runs: dict[str, WatchedRun], failing_input: dict[str, str],
    secured_broker: SecuredBroker,
) -> None:
    run = failed_runs[case_id]
    output = run.worker.output()
    assert run.exit_code == 3, output[-3000:]
    # One ERROR line at exit names the cause and the setting; while retrying the cause was
    # logged once (WARNING), however many attempts there were; no traceback anywhere.
    errors = [line for line in output.splitlines() if LOG_LINE.match(line) and " ERROR " in line]
    assert len(errors) == 1, errors
    assert cause in errors[0] and "cannot start" in errors[0]
    assert "NER_KAFKA_BOOTSTRAP_SERVERS" in errors[0] and f"NER_CONNECT_RETRY_TIMEOUT_S={RETRY_S}" in errors[0]
    warnings = [line for line in output.splitlines() if " WARNING " in line and cause in line]
    assert len(warnings) == 1, warnings
    assert "Traceback" not in output
    # /readyz answered false (503, broker unreachable) while the loaded worker retried, never true.
    assert run.retrying_observations(), f"no /readyz answer during the retries: {run.readyz[-3:]}"
    assert {o.status for o in run.readyz} == {503}
    # Nothing was marked as processed.
    group = f"{failing_input['group']}-{case_id}"
    assert committed(secured_broker.bootstrap(), group, failing_input["in"]) == {0: None}


def test_no_secret_in_logs_metrics_readiness_or_traces(failed_runs: dict[str, WatchedRun],
                                                       secured_broker: SecuredBroker) -> None:
    key_lines = key_body_lines(secured_broker.pki.client.key)
    found = {}
    for case_id, run in failed_runs.items():
        text = run.all_output()
        assert "DEBUG" in text and run.metrics and run.readyz  # the search covered a debug log and answers
        hits = leaked(text, ALL_SECRETS) + [line for line in key_lines if line in text]
        if hits:
            found[case_id] = hits
    assert found == {}


# Bad TLS material fails at once (before the engine loads), naming the setting, never the secret.
@pytest.mark.parametrize(("case_id", "variable"), [
    ("wrong-key-password", "NER_SSL_KEY_PASSWORD"),
    ("encrypted-key-without-password", "NER_SSL_KEY_PASSWORD"),
    ("ca-file-is-not-a-certificate", "NER_SSL_CAFILE"),
])
def test_unusable_tls_files_stop_the_worker_naming_the_setting(
    case_id: str, variable: str, secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    pki = secured_broker.pki
    env = {"NER_SECURITY_PROTOCOL": "SSL", "NER_KAFKA_BOOTSTRAP_SERVERS": secured_broker.bootstrap("MTLS"),
           "NER_SSL_CAFILE": str(pki.ca), "NER_SSL_CERTFILE": str(pki.client.cert),
           "NER_SSL_KEYFILE": str(pki.client.key), "NER_SSL_KEY_PASSWORD": WRONG_PASSWORD, "NER_LOG_LEVEL": "DEBUG"}
    if case_id == "encrypted-key-without-password":
        del env["NER_SSL_KEY_PASSWORD"]
    if case_id == "ca-file-is-not-a-certificate":
        env |= {"NER_SSL_CAFILE": str(pki.client.key), "NER_SSL_KEY_PASSWORD": pki.client_key_password}
    worker = SecureWorker(env, tmp_path / "worker.log").start()
    try:
        assert worker.process is not None
        code = worker.process.wait(timeout=START_TIMEOUT_S)
    finally:
        worker.kill()
    output = worker.output()
    assert code == 3, output
    assert variable in output and "cannot start" in output
    assert "Traceback" not in output and "loading engine" not in output
    assert leaked(output, ALL_SECRETS) == []


def test_a_request_in_flight_at_exit_adds_no_traceback(tmp_path: Path) -> None:
    """A probe (or a slow client) mid-request when the worker gives up must not turn the one
    clear line into a traceback."""
    env = {"NER_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "NER_CONNECT_RETRY_TIMEOUT_S": "2"}
    worker = SecureWorker(env, tmp_path / "worker.log").start()
    assert worker.process is not None
    try:
        sock = _open_when_listening(worker)
        with sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\n")
            # One header line a second: the request stays unfinished (and within the server's
            # per-line timeout) until the worker exits.
            while worker.process.poll() is None:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Slow: 1\r\n")
                time.sleep(1)
        code = worker.process.wait(timeout=START_TIMEOUT_S)
    finally:
        worker.kill()
    output = worker.output()
    assert code == 3, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert len([line for line in output.splitlines() if LOG_LINE.match(line) and " ERROR " in line]) == 1


def _open_when_listening(worker: SecureWorker) -> socket.socket:
    assert worker.process is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and worker.process.poll() is None:
        try:
            return socket.create_connection(("127.0.0.1", worker.port), timeout=5)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"the worker's HTTP port never opened:\n{worker.output()[-3000:]}")
