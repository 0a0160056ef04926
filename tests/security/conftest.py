"""Session fixtures of the security tests: a throw-away PKI and one secured broker for them all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.fixtures.kafka import create_topics, stream_names
from tests.security.broker import MECHANISMS, SaslUser, SecuredBroker, new_secured_broker
from tests.security.pki import make_pki
from tests.security.workers import CLIENT_KEY_PASSWORD, USER_PASSWORDS, TopicMaker


@pytest.fixture(scope="session")
def secured_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """A second broker with SASL_SSL, mTLS, TLS and broken-certificate listeners (see broker.py)."""
    base = tmp_path_factory.mktemp("secured-kafka")
    pki = make_pki(base / "pki", client_key_password=CLIENT_KEY_PASSWORD)
    users = {mechanism: SaslUser("ner-worker", USER_PASSWORDS[mechanism]) for mechanism in MECHANISMS}
    with new_secured_broker(base / "kafka", pki, users).running("secured broker") as broker:
        yield broker


@pytest.fixture(scope="module")
def secure_topics(secured_broker: SecuredBroker) -> TopicMaker:
    """Factory: ``secure_topics("mode")`` creates input/output/dead-letter topics (one partition
    each) on the secured broker and returns their names plus a fresh group id."""

    def make(prefix: str) -> dict[str, str]:
        names = stream_names(prefix)
        asyncio.run(create_topics(secured_broker.bootstrap(), {names[r]: 1 for r in ("in", "out", "dead")}))
        return names

    return make
