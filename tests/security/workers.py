"""Worker processes for the security tests: environment per connection mode, a watcher that
records every /readyz and /metrics answer while a worker retries, and a search for secrets."""

from __future__ import annotations

import asyncio
import base64
import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import committed_offsets
from tests.integration.worker_process import WorkerProcess
from tests.security.broker import SecuredBroker

# Every secret the tests hand to the broker or the worker; distinctive, so that a match in the
# output can only be a leak. Letters, digits and dashes only: the broker's SCRAM format arguments
# and its JAAS line take them as they are.
USER_PASSWORDS = {"PLAIN": "plain-Pw-3f9c1a70", "SCRAM-SHA-256": "scram256-Pw-77be02d1",
                  "SCRAM-SHA-512": "scram512-Pw-c4d1e9f3"}
CLIENT_KEY_PASSWORD = "keypass-Pw-91d0b7e5"
WRONG_PASSWORD = "wrong-Pw-5a8e13c7"
ALL_SECRETS = [*USER_PASSWORDS.values(), CLIENT_KEY_PASSWORD, WRONG_PASSWORD]
# Makes input, output and dead-letter topics and a group id: {"in": ..., "out": ..., "dead": ..., "group": ...}.
TopicMaker = Callable[[str], dict[str, str]]
# Larger than any default timeout a test waits on, so a slow shared machine does not fail it.
START_TIMEOUT_S = 300.0


class SecureWorker(WorkerProcess):
    """WorkerProcess whose HTTP endpoints may listen on another loopback address."""

    def start(self) -> SecureWorker:
        super().start()
        return self

    def request(self, method: str, path: str, host: str | None = None) -> tuple[int, str]:
        connection = http.client.HTTPConnection(host or self.http_host, self.port, timeout=5)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def output(self) -> str:
        """Everything the worker wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def connection_env(broker: SecuredBroker, mode: str, folder: Path, *, from_files: bool = False) -> dict[str, str]:
    """NER_* settings to reach ``broker`` in ``mode``: ``ssl``, ``mtls`` or a SASL mechanism.

    ``from_files`` mounts the secrets as files (``NER_SASL_PASSWORD_FILE``,
    ``NER_SSL_KEY_PASSWORD_FILE``) ending in a newline, as a Secret made with ``echo`` holds them.
    """
    pki = broker.pki
    env = {"NER_SSL_CAFILE": str(pki.ca)}
    if mode in ("ssl", "mtls"):
        env |= {"NER_SECURITY_PROTOCOL": "SSL",
                "NER_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap("MTLS" if mode == "mtls" else "TLS")}
    else:
        user = broker.users[mode]
        env |= {"NER_SECURITY_PROTOCOL": "SASL_SSL", "NER_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap("SASL_SSL"),
                "NER_SASL_MECHANISM": mode, "NER_SASL_USERNAME": user.name}
        env |= secret_setting("NER_SASL_PASSWORD", user.password, folder, from_files)
    if mode == "mtls":
        env |= client_certificate_env(broker, folder, from_files=from_files)
    return env


def client_certificate_env(broker: SecuredBroker, folder: Path, *, from_files: bool,
                           expired: bool = False) -> dict[str, str]:
    identity = broker.pki.expired_client if expired else broker.pki.client
    return {"NER_SSL_CERTFILE": str(identity.cert), "NER_SSL_KEYFILE": str(identity.key),
            **secret_setting("NER_SSL_KEY_PASSWORD", broker.pki.client_key_password, folder, from_files)}


def secret_setting(name: str, value: str, folder: Path, from_file: bool) -> dict[str, str]:
    if not from_file:
        return {name: value}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name.lower()
    path.write_text(value + "\n")
    path.chmod(0o400)
    return {f"{name}_FILE": str(path)}


def secret_forms(secrets: list[str]) -> dict[str, str]:
    """Each secret as written in clear and as base64 (SASL PLAIN tokens travel base64-encoded)."""
    forms = {}
    for secret in secrets:
        forms[secret] = secret
        forms[f"base64({secret})"] = base64.b64encode(secret.encode()).decode()
    return forms


def leaked(text: str, secrets: list[str]) -> list[str]:
    return [name for name, form in secret_forms(secrets).items() if form in text]


def key_body_lines(key_pem: Path) -> list[str]:
    """The base64 lines of a private key file: none may ever show up in the output."""
    return [line for line in key_pem.read_text().splitlines() if line and not line.startswith("-----")]


@dataclass
class Observation:
    status: int
    body: str


@dataclass
class WatchedRun:
    """A worker expected to fail at start: every HTTP answer until it exits is kept."""

    worker: SecureWorker
    readyz: list[Observation] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    exit_code: int | None = None
    _thread: threading.Thread | None = None

    def start(self) -> WatchedRun:
        self.worker.start()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        process = self.worker.process
        assert process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            try:
                self.readyz.append(Observation(*self.worker.get("/readyz")))
                self.metrics.append(self.worker.get("/metrics")[1])
            except OSError:
                pass  # not listening yet, or gone
            time.sleep(0.25)
        if process.poll() is None:
            self.worker.kill()
        self.exit_code = process.wait()

    def wait(self) -> WatchedRun:
        assert self._thread is not None
        self._thread.join(START_TIMEOUT_S + 30)
        return self

    def all_output(self) -> str:
        return "\n".join([self.worker.output(), *(o.body for o in self.readyz), *self.metrics])

    def retrying_observations(self) -> list[Observation]:
        """/readyz answers given while the engine was loaded but the broker not reached."""
        found = []
        for observation in self.readyz:
            checks = orjson.loads(observation.body)["checks"]
            if checks["engine_loaded"] and not checks["broker_reachable"]:
                found.append(observation)
        return found


async def produce(bootstrap: str, topic: str, values: list[bytes] | dict[bytes, bytes]) -> None:
    """Writes the values (keyed ``key-<n>``, or by their dict keys) and waits for the broker's acks."""
    keyed = values if isinstance(values, dict) else {f"key-{n}".encode(): v for n, v in enumerate(values)}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        for key, value in keyed.items():
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> dict[int, int | None]:
    return asyncio.run(committed_offsets(bootstrap, group, topic, partitions))
