"""A second local Kafka broker with TLS and SASL listeners, started by tools/kafka/kafka-local.sh.

It runs beside the default broker with its own state folder and ports. Listeners, all on
127.0.0.1 (each ``SSL`` one presents a PEM key store signed by the test CA unless said otherwise):

    PLAINTEXT  readiness, topic creation, reading results (no client ever needs TLS for that)
    SASL_SSL   PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512
    MTLS       SSL, client certificate required (signed by the test CA)
    TLS        SSL, no client certificate
    EXPIRED    SSL with an expired broker certificate
    WRONGHOST  SSL with a certificate for another host name

SCRAM users are created when the data folder is formatted (``--add-scram``); PLAIN users live in
the listener's JAAS line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest

from tests.fixtures.kafka import KAFKA_TOOL, REPO_ROOT
from tests.fixtures.ports import free_port
from tests.security.pki import Identity, Pki

SECURED_LISTENERS = {"MTLS": "SSL", "TLS": "SSL", "EXPIRED": "SSL", "WRONGHOST": "SSL", "SASL_SSL": "SASL_SSL"}
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TOOL_TIMEOUT_S = 600
_DEFAULT_LIB = REPO_ROOT / ".cache" / "kafka" / "lib"


@dataclass(frozen=True)
class SaslUser:
    name: str
    password: str


@dataclass
class LocalBroker:
    """A broker of a test's own, run by kafka-local.sh from ``home`` with extra properties.

    ``PLAINTEXT`` and ``CONTROLLER`` are always among its listeners (readiness, topic creation and
    the controller use them); subclasses render the rest in ``render_properties``.
    """

    home: Path
    ports: dict[str, int]
    """Listener name -> port; ``PLAINTEXT`` and ``CONTROLLER`` included."""

    def bootstrap(self, listener: str = "PLAINTEXT") -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    @property
    def properties_file(self) -> Path:
        return self.home / "secure.properties"

    def format_args(self) -> str:
        """Extra words for formatting a new data folder (``kafka-storage format``)."""
        return ""

    def render_properties(self) -> str:
        raise NotImplementedError

    def tool_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_LOCAL_HOME": str(self.home),
            "KAFKA_PORT": str(self.ports["PLAINTEXT"]),
            "KAFKA_CONTROLLER_PORT": str(self.ports["CONTROLLER"]),
            "KAFKA_EXTRA_PROPERTIES": str(self.properties_file),
            "KAFKA_FORMAT_ARGS": self.format_args(),
            "PYTHON": sys.executable,
        }

    def run_tool(self, command: str) -> str:
        proc = subprocess.run([str(KAFKA_TOOL), command], env=self.tool_env(), capture_output=True, text=True,
                              timeout=_TOOL_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"kafka-local.sh {command} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.render_properties())
        _share_jars(self.home / "lib")
        self.run_tool("start")

    def stop(self) -> None:
        self.run_tool("stop")

    @contextlib.contextmanager
    def running(self, what: str) -> Iterator[Self]:
        """Started for the ``with`` block (a test failure naming ``what`` if it cannot start), then stopped."""
        try:
            self.start()
        except RuntimeError as exc:
            pytest.fail(f"the {what} did not start: {exc}\n{self.log_text()[-3000:]}", pytrace=False)
        try:
            yield self
        finally:
            self.stop()

    def log_text(self) -> str:
        path = self.home / "logs" / "kafka.out"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class SecuredBroker(LocalBroker):
    pki: Pki
    users: dict[str, SaslUser]
    """SASL mechanism -> a user the broker knows for it."""

    def format_args(self) -> str:
        return " ".join(f"--add-scram {m}=[name={u.name},password={u.password}]"
                        for m, u in self.users.items() if m.startswith("SCRAM"))

    def render_properties(self) -> str:
        def keystore(identity: Identity, prefix: str = "") -> list[str]:
            # Inline PEM (KIP-651): the unencrypted key and the chain, newlines as \n escapes.
            return [f"{prefix}ssl.keystore.key={_inline(identity.key)}",
                    f"{prefix}ssl.keystore.certificate.chain={_inline(identity.cert)}"]

        listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.ports.items()
                             if name not in ("PLAINTEXT", "CONTROLLER"))
        protocol_map = ",".join(f"{name}:{protocol}" for name, protocol in SECURED_LISTENERS.items())
        plain_user = self.users["PLAIN"]
        lines = [
            f"listeners=PLAINTEXT://127.0.0.1:@KAFKA_PORT@,CONTROLLER://127.0.0.1:@KAFKA_CONTROLLER_PORT@,{listeners}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:@KAFKA_PORT@,{listeners}",
            f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,{protocol_map}",
            "ssl.keystore.type=PEM",
            *keystore(self.pki.broker),
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.pki.ca}",
            "ssl.client.auth=none",
            "listener.name.mtls.ssl.client.auth=required",
            *keystore(self.pki.expired_broker, "listener.name.expired."),
            *keystore(self.pki.wrong_host_broker, "listener.name.wronghost."),
            f"sasl.enabled.mechanisms={','.join(MECHANISMS)}",
            "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule"
            f' required user_{plain_user.name}="{plain_user.password}";',
            *(f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config="
              "org.apache.kafka.common.security.scram.ScramLoginModule required;"
              for m in MECHANISMS if m.startswith("SCRAM")),
        ]
        return "\n".join(lines) + "\n"


def new_secured_broker(home: Path, pki: Pki, users: dict[str, SaslUser]) -> SecuredBroker:
    names = ("PLAINTEXT", "CONTROLLER", *SECURED_LISTENERS)
    return SecuredBroker(home=home, pki=pki, ports={name: free_port() for name in names}, users=users)


def _inline(pem: Path) -> str:
    return pem.read_text().strip().replace("\n", "\\n")


def _share_jars(lib: Path) -> None:
    """Reuse the default instance's resolved jars (hard links) instead of a Maven run; without
    them kafka-local.sh resolves the jars itself."""
    if lib.exists() or not (_DEFAULT_LIB / ".kafka-version").is_file():
        return
    try:
        shutil.copytree(_DEFAULT_LIB, lib, copy_function=os.link)
    except OSError:
        shutil.rmtree(lib, ignore_errors=True)
        shutil.copytree(_DEFAULT_LIB, lib)
