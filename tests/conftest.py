"""Shared test configuration: the real Kafka broker and schema registry come from tests/fixtures/."""

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.registry"]
