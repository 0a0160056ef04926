"""Shared test configuration: the real Kafka broker comes from tests/fixtures/kafka.py."""

pytest_plugins = ["tests.fixtures.kafka"]
