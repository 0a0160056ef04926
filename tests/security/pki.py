"""A throw-away public key infrastructure for the TLS tests, made with ``cryptography``.

One CA signs the broker's certificates (a good one, an expired one, one for another host name)
and the client's certificates (a good one and an expired one); a second, unknown CA is trusted
by nobody (a client that trusts only it must refuse the broker). Keys are EC P-256: quick to
make, and both Python's ``ssl`` and the broker's JVM read them. Client keys are encrypted PKCS#8
PEM (the worker's NER_SSL_KEY_PASSWORD); broker keys are not encrypted: the broker takes them
inline (``ssl.keystore.key``), because its file-based PEM key store insists on an encrypted key
and Java 17 cannot decrypt the PBES2 keys that ``cryptography`` (and OpenSSL) write ("PBES2
SecretKeyFactory not available").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BROKER_HOSTS = ("localhost", "127.0.0.1")
WRONG_HOST = "kafka.example.invalid"
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Identity:
    """A certificate (PEM, with the chain up to the CA) and its PKCS#8 private key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    """The CA the broker's and the client's certificates are signed by (also the broker's trust store)."""
    unknown_ca: Path
    """A CA that signed none of the broker's certificates."""
    broker: Identity
    expired_broker: Identity
    wrong_host_broker: Identity
    client: Identity
    expired_client: Identity
    client_key_password: str
    """Password of every client key (the worker's NER_SSL_KEY_PASSWORD)."""


@dataclass(frozen=True)
class _Authority:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_pki(folder: Path, *, client_key_password: str) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca = _authority("kafka-ner-worker test CA", now)
    unknown = _authority("kafka-ner-worker unknown CA", now)
    _write(folder / "ca.pem", _pem(ca.cert))
    _write(folder / "unknown-ca.pem", _pem(unknown.cert))

    def issue(name: str, signer: _Authority, *, hosts: tuple[str, ...] = (), server: bool,
              expired: bool = False, password: str | None) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        # An expired certificate was valid once: both bounds lie in the past.
        not_before, not_after = (now - 30 * _DAY, now - _DAY) if expired else (now - _DAY, now + 30 * _DAY)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(signer.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        )
        if hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        cert = builder.sign(signer.key, hashes.SHA256())
        identity = Identity(folder / f"{name}.pem", folder / f"{name}.key.pem")
        _write(identity.cert, _pem(cert) + _pem(signer.cert))
        _write(identity.key, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption(),
        ))
        return identity

    client_pw = client_key_password
    return Pki(
        ca=folder / "ca.pem",
        unknown_ca=folder / "unknown-ca.pem",
        broker=issue("broker", ca, hosts=BROKER_HOSTS, server=True, password=None),
        expired_broker=issue("broker-expired", ca, hosts=BROKER_HOSTS, server=True, expired=True, password=None),
        wrong_host_broker=issue("broker-wrong-host", ca, hosts=(WRONG_HOST,), server=True, password=None),
        client=issue("client", ca, server=False, password=client_pw),
        expired_client=issue("client-expired", ca, server=False, expired=True, password=client_pw),
        client_key_password=client_pw,
    )


def _authority(common_name: str, now: dt.datetime) -> _Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 365 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Authority(name, key, cert)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)  # like a mounted secret: readable by its owner only
