"""The Kafka clients of the ``run`` command: build them, connect them with a bounded retry, and
check the topics they will write to.

Every failure to connect is retried until ``NER_CONNECT_RETRY_TIMEOUT_S`` (a certificate or a
password may be rotated while the worker waits); /readyz stays false meanwhile. The cause is
logged once when it first appears, not on every attempt, and again in the ``StartupError`` at
the end (``kafka_diagnostics`` names it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker.retry import Backoff
from worker.settings import Settings, SettingsError
from worker.stream.kafka_diagnostics import bootstrap_errors, connect_failure_cause
from worker.stream.kafka_security import kafka_security_kwargs

log = logging.getLogger(__name__)

_PARTITIONS_TIMEOUT_S = 30.0


class StartupError(RuntimeError):
    """The worker cannot start; the message names the cause."""


@dataclass(slots=True)
class KafkaClients:
    """The shared producer (at-least-once outputs, topic metadata) and the group's consumer."""

    consumer: AIOKafkaConsumer
    common: dict[str, Any]
    """Connection and security arguments, for the exactly-once producers made later."""
    producer_limits: dict[str, Any]
    client_id: str
    producer: AIOKafkaProducer = field(init=False)

    def __post_init__(self) -> None:
        self.producer = self.new_producer()

    def new_producer(self) -> AIOKafkaProducer:
        """An idempotent producer like the shared one, not started (the at-least-once publisher
        replaces a producer whose sequence numbers a refused batch broke)."""
        return AIOKafkaProducer(client_id=f"{self.client_id}-producer", enable_idempotence=True, acks="all",
                                linger_ms=5, **self.producer_limits, **self.common)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security arguments; a bad certificate or key fails here, at once."""
    try:
        return {"bootstrap_servers": settings.kafka_bootstrap_servers, **kafka_security_kwargs(settings)}
    except SettingsError as exc:
        raise StartupError(str(exc)) from None


def make_clients(settings: Settings, common: dict[str, Any]) -> KafkaClients:
    """Both clients, not started yet."""
    producer_limits = {"max_request_size": settings.max_produce_bytes, "max_batch_size": 262_144}
    consumer = AIOKafkaConsumer(
        client_id=f"{settings.client_id}-consumer", group_id=settings.group_id, enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset, isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms, max_poll_interval_ms=settings.max_poll_interval_ms,
        # aiokafka's default is the session timeout (6-30 s): a revoke drain longer than that gets
        # the worker evicted mid-drain. Java clients use the poll interval; the settings check that
        # NER_DRAIN_TIMEOUT_S is shorter.
        rebalance_timeout_ms=settings.max_poll_interval_ms,
        **common,
    )
    return KafkaClients(consumer, common, producer_limits, settings.client_id)


async def connect(clients: KafkaClients, settings: Settings) -> None:
    """Start the producer, then the consumer, within one deadline for both."""
    backoff = Backoff(deadline_s=settings.connect_retry_timeout_s)
    reported = ""
    with bootstrap_errors() as seen:
        for client, name in ((clients.producer, "producer"), (clients.consumer, "consumer")):
            while True:
                try:
                    await client.start()
                    break
                except (KafkaError, OSError) as exc:
                    cause = connect_failure_cause(seen[-1] if seen else exc, settings)
                    seen.clear()
                    if backoff.exhausted():
                        raise StartupError(
                            f"cannot connect the {name} to NER_KAFKA_BOOTSTRAP_SERVERS="
                            f"{settings.kafka_bootstrap_servers} within NER_CONNECT_RETRY_TIMEOUT_S="
                            f"{settings.connect_retry_timeout_s:g}: {cause}"
                        ) from None
                    if cause != reported:
                        log.warning("%s cannot connect to the broker yet, retrying for up to %.0fs: %s",
                                    name, backoff.remaining(), cause)
                        reported = cause
                    await backoff.wait()  # the last attempt falls on the deadline


async def partition_counts(producer: AIOKafkaProducer, settings: Settings) -> dict[str, int]:
    """Partitions of the output and dead-letter topics; a missing topic names its setting."""
    counts: dict[str, int] = {}
    for setting, topic in (("NER_OUTPUT_TOPIC", settings.output_topic),
                           ("NER_DEAD_LETTER_TOPIC", settings.dead_letter_topic)):
        try:
            partitions = await asyncio.wait_for(producer.partitions_for(topic), timeout=_PARTITIONS_TIMEOUT_S)
        except (TimeoutError, KafkaError):
            partitions = None
        if not partitions:
            raise StartupError(f"{setting}: topic {topic!r} does not exist or has no partitions")
        counts[topic] = len(partitions)
    return counts
