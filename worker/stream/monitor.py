"""Every few seconds: whether the broker answers (for /readyz) and the consumer lag per partition."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from worker.stream.health import StreamStatus
from worker.stream.metrics import WorkerMetrics

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 5.0

CommittedPositions = Callable[[], dict[TopicPartition, int | None]]


async def monitor(consumer: AIOKafkaConsumer, committed: CommittedPositions, metrics: WorkerMetrics,
                  status: StreamStatus) -> None:
    """Runs until cancelled. Lag is measured from the worker's own committed positions."""
    while True:
        await asyncio.sleep(MONITOR_INTERVAL_S)
        assigned = list(consumer.assignment())
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(assigned), timeout=MONITOR_INTERVAL_S) \
                if assigned else {}
            if not assigned:
                await asyncio.wait_for(consumer.topics(), timeout=MONITOR_INTERVAL_S)
            status.broker_reachable = True
        except (TimeoutError, KafkaError) as exc:
            if status.broker_reachable:
                log.warning("broker unreachable: %s", exc)
            status.broker_reachable = False
            continue
        positions = committed()
        for tp, end in ends.items():
            position = positions.get(TopicPartition(tp.topic, tp.partition))
            if position is None:
                continue
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))
