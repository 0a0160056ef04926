"""Kafka connection diagnostics: name why a connection failed, and keep secrets out of the logs.

The worker retries a failing broker connection for a bounded time. An operator then needs one
line that says what is wrong (an unknown CA, an expired or mismatched certificate, a refused
password, nothing listening) and which setting to look at, not aiokafka's bare "Unable to
bootstrap" repeated on every attempt. Nothing here ever formats a password or a key.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator

from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from worker.logs import extra_fields
from worker.settings import Settings

# OpenSSL's X509_V_ERR_* codes of the broker certificate checks a user can act on.
_UNKNOWN_CA_CODES = frozenset({2, 18, 19, 20, 21})
_EXPIRED, _NOT_YET_VALID, _HOSTNAME_MISMATCH, _IP_MISMATCH = 10, 9, 62, 64
# TLS alerts a broker sends when it refuses the client's certificate (or its absence).
_CLIENT_CERT_ALERTS = ("BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "CERTIFICATE_REQUIRED", "CERTIFICATE_EXPIRED",
                       "UNKNOWN_CA", "HANDSHAKE_FAILURE")


def connect_failure_cause(error: BaseException, settings: Settings) -> str:
    """One line naming why a connection failed and which setting to look at (never a secret)."""
    for exc in _chain(error):
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = f"({exc.verify_message})"
            if exc.verify_code == _EXPIRED:
                return f"the broker's TLS certificate has expired {detail}"
            if exc.verify_code == _NOT_YET_VALID:
                return f"the broker's TLS certificate is not valid yet {detail}; check the clocks"
            if exc.verify_code in _UNKNOWN_CA_CODES:
                trusted = f"NER_SSL_CAFILE={settings.ssl_cafile}" if settings.ssl_cafile else "the system's CA store"
                return f"unknown CA: the broker's TLS certificate is not signed by a CA in {trusted} {detail}"
            if exc.verify_code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
                return (f"host name mismatch: the broker's TLS certificate is not valid for the address in "
                        f"NER_KAFKA_BOOTSTRAP_SERVERS {detail}")
            return f"the broker's TLS certificate failed verification {detail}"
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or str(exc)
            if any(alert in reason for alert in _CLIENT_CERT_ALERTS):
                return (f"the broker refused the TLS handshake ({reason}): it wants a client certificate it "
                        "trusts; check NER_SSL_CERTFILE and NER_SSL_KEYFILE")
            if "WRONG_VERSION_NUMBER" in reason:
                return f"the broker did not answer with TLS ({reason}); check NER_SECURITY_PROTOCOL"
            return f"TLS error ({reason})"
        if isinstance(exc, SaslAuthenticationFailed):
            return (f"SASL authentication failed for user {settings.sasl_username!r} with {settings.sasl_mechanism} "
                    f"({_broker_message(exc)}); check NER_SASL_USERNAME and NER_SASL_PASSWORD")
        if isinstance(exc, UnsupportedSaslMechanismError):
            return f"the broker does not offer {settings.sasl_mechanism}; check NER_SASL_MECHANISM ({exc})"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection refused: nothing accepts connections at the address ({exc.strerror or exc})"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve the broker's host name ({exc.strerror or exc})"
        if isinstance(exc, ConnectionResetError):
            return "the broker closed the connection at once; check that NER_SECURITY_PROTOCOL matches its listener"
        if isinstance(exc, TimeoutError):
            return "the broker did not answer in time"
    return f"{type(error).__name__}: {error}"


def _chain(error: BaseException) -> Iterator[BaseException]:
    # aiokafka wraps a refused TLS handshake into KafkaConnectionError; the cause says why.
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _broker_message(exc: KafkaError) -> str:
    return str(exc.args[0]) if exc.args else type(exc).__name__


@contextlib.contextmanager
def bootstrap_errors() -> Iterator[list[BaseException]]:
    """Collect the errors aiokafka meets while bootstrapping, and silence its per-attempt lines.

    aiokafka logs each failed bootstrap connection at ERROR and then raises a bare
    "Unable to bootstrap" KafkaConnectionError: the real cause (a certificate check, a refused
    password) exists only in that log record. The filter keeps it so the worker can name it once.
    """
    seen: list[BaseException] = []

    def keep(record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if str(record.msg).startswith("Unable connect to") and args and isinstance(args[-1], BaseException):
            seen.append(args[-1])
            return False
        return True

    client_log = logging.getLogger("aiokafka")  # the logger aiokafka.client writes to
    client_log.addFilter(keep)
    try:
        yield seen
    finally:
        client_log.removeFilter(keep)


class _SaslPayloadFilter(logging.Filter):
    """Drops aiokafka's DEBUG lines of SASL authentication requests and responses.

    aiokafka logs every request at DEBUG, SASL bytes included: for PLAIN they hold the password
    in clear text, for SCRAM the salt, nonces and proof that an offline guess can be tested against.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(type(arg).__name__.startswith("SaslAuthenticate") for arg in args)


class _RedactSecrets(logging.Filter):
    """Backstop on the log handlers: masks a secret's value wherever a log line still carries it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = [value for value in secrets if value]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        if any(secret in text for secret in self._secrets):
            record.msg, record.args, record.exc_info, record.exc_text = self._mask(text), None, None, None
        # Structured fields (extra={...}) are logged as they are: an error text may carry a secret.
        for key, value in extra_fields(record).items():
            if isinstance(value, str) and any(secret in value for secret in self._secrets):
                setattr(record, key, self._mask(value))
        return True

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "**********")
        return text


def guard_secret_logging(settings: Settings) -> None:
    """Install both filters (again after a logging reconfiguration; never twice on one handler)."""
    conn_log = logging.getLogger("aiokafka.conn")
    if not any(isinstance(f, _SaslPayloadFilter) for f in conn_log.filters):
        conn_log.addFilter(_SaslPayloadFilter())
    secrets = [s.reveal() for s in (settings.sasl_password, settings.ssl_key_password) if s is not None]
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, _RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(_RedactSecrets(secrets))
