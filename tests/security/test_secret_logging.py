"""aiokafka's DEBUG request log carries SASL PLAIN passwords; the worker's log guard drops them.

The worker's own logging keeps aiokafka at INFO even at NER_LOG_LEVEL=DEBUG, so these tests
switch aiokafka's DEBUG output on by hand: the guard must hold under any logging set-up (a
deployment's own log configuration, the worker used as a library).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator

import orjson
import pytest
from aiokafka.conn import create_conn

from tests.security.broker import SecuredBroker
from tests.security.workers import leaked
from worker.logs import JsonLinesFormatter
from worker.settings import Secret, Settings
from worker.stream.kafka_diagnostics import guard_secret_logging

pytestmark = [pytest.mark.security, pytest.mark.integration]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_lines() -> Iterator[_Lines]:
    """Every log line of the process at DEBUG, aiokafka's included; logging restored after."""
    root, aiokafka_log = logging.getLogger(), logging.getLogger("aiokafka")
    conn_log = logging.getLogger("aiokafka.conn")
    saved = (root.level, aiokafka_log.level, list(root.handlers), list(conn_log.filters))
    handler = _Lines()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    aiokafka_log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.setLevel(saved[0])
        aiokafka_log.setLevel(saved[1])
        root.handlers[:] = saved[2]
        conn_log.filters[:] = saved[3]
        for kept in root.handlers:
            kept.filters[:] = [f for f in kept.filters if type(f).__name__ != "_RedactSecrets"]


async def _login(broker: SecuredBroker, mechanism: str) -> None:
    context = ssl.create_default_context(cafile=str(broker.pki.ca))
    user = broker.users[mechanism]
    conn = await create_conn("127.0.0.1", broker.ports["SASL_SSL"], ssl_context=context, security_protocol="SASL_SSL",
                             sasl_mechanism=mechanism, sasl_plain_username=user.name,
                             sasl_plain_password=user.password)
    conn.close()


def test_aiokafka_debug_logs_the_plain_password_unless_the_guard_is_installed(
    secured_broker: SecuredBroker, debug_lines: _Lines
) -> None:
    password = secured_broker.users["PLAIN"].password
    asyncio.run(_login(secured_broker, "PLAIN"))
    # Without the guard the leak is real: the SaslAuthenticate request shows the password.
    assert leaked("\n".join(debug_lines.lines), [password]), "aiokafka no longer logs SASL bytes"

    debug_lines.lines.clear()
    guard_secret_logging(Settings(sasl_password=Secret(password)))
    asyncio.run(_login(secured_broker, "PLAIN"))
    text = "\n".join(debug_lines.lines)
    assert "Authenticated as" in text and "ApiVersionRequest" in text  # DEBUG lines still flow
    assert "SaslAuthenticate" not in text  # dropped at the source, not just masked
    assert leaked(text, [password]) == []


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_exchanges_are_not_logged(mechanism: str, secured_broker: SecuredBroker, debug_lines: _Lines) -> None:
    guard_secret_logging(Settings(sasl_password=Secret(secured_broker.users[mechanism].password)))
    asyncio.run(_login(secured_broker, mechanism))
    text = "\n".join(debug_lines.lines)
    assert f"via {mechanism}" in text
    # Salt, nonces and client proof would let anyone reading the log test password guesses offline.
    assert "SaslAuthenticate" not in text and ",p=" not in text and ",s=" not in text


def test_a_secret_in_any_other_log_line_is_masked(debug_lines: _Lines) -> None:
    guard_secret_logging(Settings(sasl_password=Secret("hunter2-sasl"), ssl_key_password=Secret("hunter2-key")))
    log = logging.getLogger("some.library")
    log.debug("connecting with %s", {"password": "hunter2-sasl"})
    try:
        raise ValueError("bad key password hunter2-key")
    except ValueError:
        log.exception("failed")
    text = "\n".join(debug_lines.lines)
    assert "hunter2" not in text
    assert "connecting with {'password': '**********'}" in text and "ValueError: bad key password ****" in text


def test_a_secret_in_a_structured_field_is_masked(debug_lines: _Lines) -> None:
    debug_lines.setFormatter(JsonLinesFormatter())
    guard_secret_logging(Settings(sasl_password=Secret("hunter2-sasl")))
    logging.getLogger("worker.stream").warning(
        "connect failed", extra={"error": "login with hunter2-sasl refused", "partition": 2}
    )
    entry = orjson.loads(debug_lines.lines[-1])
    assert "hunter2" not in debug_lines.lines[-1]
    assert (entry["error"], entry["partition"]) == ("login with ********** refused", 2)
