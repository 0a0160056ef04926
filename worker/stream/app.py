"""``ner-worker run``: wire settings, engine, Kafka clients, HTTP endpoints and the stream loop.

Start-up order matters: the engine loads first (slow, and pointless to join the group before),
then the Kafka clients connect (with a bounded retry), the topics are checked, and only then the
consumer subscribes. SIGTERM/SIGINT stop intake, drain in-flight work, commit, leave the group
and exit within ``NER_DRAIN_TIMEOUT_S`` plus a small margin.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from worker import __version__
from worker.annotator import Annotator
from worker.engine import Engine
from worker.http import HealthServer
from worker.settings import Settings, SettingsError
from worker.signals import stop_on_signals
from worker.stream.kafka_diagnostics import bootstrap_errors, connect_failure_cause, guard_secret_logging
from worker.stream.metrics import WorkerMetrics
from worker.stream.publisher import Publisher, RecordWriter, Sink
from worker.stream.runner import StreamRunner
from worker.stream.transactions import TransactionalPublisher, eos_producer_factory

log = logging.getLogger(__name__)

_MONITOR_INTERVAL_S = 5.0
_STALL_LIMIT_S = 60.0
_SHUTDOWN_MARGIN_S = 10.0


class StartupError(RuntimeError):
    """The worker cannot start; the message names the cause."""


async def run_worker(settings: Settings, *, metrics: WorkerMetrics | None = None,
                     engine: Engine | None = None) -> None:
    """Run until SIGTERM/SIGINT. ``engine`` replaces the one ``NER_ENGINE`` names (benchmarks)."""
    metrics = metrics or WorkerMetrics()
    metrics.info.info({"version": __version__, "engine": settings.engine, "model": settings.model})
    state = _ReadyState()
    runner_ref: list[StreamRunner] = []
    http = HealthServer(
        metrics.registry,
        health=lambda: {"event_loop": True, "main_loop": state.loop_alive(runner_ref)},
        readiness=lambda: state.checks(runner_ref),
        host=settings.http_host,
        port=settings.http_port,
    )
    guard_secret_logging(settings)
    common = _client_kwargs(settings)  # before the slow engine load: a bad certificate or key fails at once
    if settings.http_port:
        await http.start()
    log.info("loading engine %s with model %s", settings.engine, settings.model)
    try:
        annotator = Annotator.from_settings(settings, engine)
        await annotator.engine.start()
        # Libraries, tokenizer and model are loaded: keep their objects out of every later garbage
        # collection, which would otherwise walk them all (about a third of the Kafka path's CPU).
        gc.freeze()
    except Exception as exc:  # any failure to load is a start-up error that names the setting
        await http.close()
        raise StartupError(f"NER_MODEL={settings.model}: the {settings.engine} engine cannot load it: {exc}") from exc
    state.engine = annotator.engine
    producer_limits = {"max_request_size": settings.max_produce_bytes, "max_batch_size": 262_144}
    producer = AIOKafkaProducer(
        client_id=f"{settings.client_id}-producer", enable_idempotence=True, acks="all", linger_ms=5,
        **producer_limits, **common,
    )
    consumer = AIOKafkaConsumer(
        client_id=f"{settings.client_id}-consumer", group_id=settings.group_id, enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset, isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms, max_poll_interval_ms=settings.max_poll_interval_ms,
        **common,
    )
    stop_requested = asyncio.Event()
    stop_on_signals(stop_requested)
    try:
        await _connect(producer, consumer, settings)
        partitions = await _partition_counts(producer, settings)
        state.broker_reachable = True
        writer = RecordWriter(settings, metrics, output_partitions=partitions[settings.output_topic],
                              dead_letter_partitions=partitions[settings.dead_letter_topic])
        publisher: Sink
        if settings.delivery == "exactly-once":
            publisher = TransactionalPublisher(
                writer,
                eos_producer_factory({**common, **producer_limits}, client_id=f"{settings.client_id}-txn",
                                     transaction_timeout_ms=settings.transaction_timeout_ms),
                group_id=settings.group_id, id_prefix=settings.transactional_id_prefix,
                rewind=lambda tp, lost: runner.rewind(tp, lost),
                start_timeout_s=settings.connect_retry_timeout_s,
            )
        else:
            publisher = Publisher(producer, writer, rewind=lambda tp, lost: runner.rewind(tp, lost))
        runner = StreamRunner(settings, consumer, publisher, annotator, metrics)
        runner_ref.append(runner)
        consumer.subscribe([settings.input_topic], listener=runner.listener())
        monitor = asyncio.create_task(_monitor(consumer, runner, metrics, state))
        run_task = asyncio.create_task(runner.run())
        stop_wait = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({run_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not run_task.done():
            log.info("stop requested: draining in-flight work (at most %.1fs)", settings.drain_timeout_s)
            runner.stop()
        try:
            await asyncio.wait_for(asyncio.shield(run_task), settings.drain_timeout_s + _SHUTDOWN_MARGIN_S)
        finally:
            stop_wait.cancel()
            monitor.cancel()
            await _stop_quietly(publisher.close(), "publisher")
    finally:
        state.engine = None
        await _stop_quietly(consumer.stop(), "consumer")  # leaves the group: partitions move at once
        await _stop_quietly(producer.stop(), "producer")
        await annotator.engine.close()
        await http.close()


async def _connect(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, settings: Settings) -> None:
    """Start both clients, retrying until ``connect_retry_timeout_s``; /readyz stays false meanwhile.

    Every failure is retried (a certificate or a password may be rotated while the worker
    waits). The cause is logged once when it first appears, not on every attempt, and again in
    the StartupError at the end.
    """
    deadline = time.monotonic() + settings.connect_retry_timeout_s
    delay = 0.5
    reported = ""
    with bootstrap_errors() as seen:
        for client, name in ((producer, "producer"), (consumer, "consumer")):
            while True:
                try:
                    await client.start()
                    break
                except (KafkaError, OSError) as exc:
                    cause = connect_failure_cause(seen[-1] if seen else exc, settings)
                    seen.clear()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise StartupError(
                            f"cannot connect the {name} to NER_KAFKA_BOOTSTRAP_SERVERS="
                            f"{settings.kafka_bootstrap_servers} within NER_CONNECT_RETRY_TIMEOUT_S="
                            f"{settings.connect_retry_timeout_s:g}: {cause}"
                        ) from None
                    if cause != reported:
                        log.warning("%s cannot connect to the broker yet, retrying for up to %.0fs: %s",
                                    name, remaining, cause)
                        reported = cause
                    await asyncio.sleep(min(delay, remaining))  # the last attempt falls on the deadline
                    delay = min(delay * 2, 5.0)


def _client_kwargs(settings: Settings) -> dict[str, Any]:
    try:
        return {"bootstrap_servers": settings.kafka_bootstrap_servers, **settings.kafka_security_kwargs()}
    except SettingsError as exc:
        raise StartupError(str(exc)) from None


async def _partition_counts(producer: AIOKafkaProducer, settings: Settings) -> dict[str, int]:
    counts: dict[str, int] = {}
    for setting, topic in (("NER_OUTPUT_TOPIC", settings.output_topic),
                           ("NER_DEAD_LETTER_TOPIC", settings.dead_letter_topic)):
        try:
            partitions = await asyncio.wait_for(producer.partitions_for(topic), timeout=30)
        except (TimeoutError, KafkaError):
            partitions = None
        if not partitions:
            raise StartupError(f"{setting}: topic {topic!r} does not exist or has no partitions")
        counts[topic] = len(partitions)
    return counts


async def _monitor(consumer: AIOKafkaConsumer, runner: StreamRunner, metrics: WorkerMetrics,
                   state: _ReadyState) -> None:
    """Every few seconds: broker reachability (for /readyz) and consumer lag per partition."""
    while True:
        await asyncio.sleep(_MONITOR_INTERVAL_S)
        assigned = list(consumer.assignment())
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(assigned), timeout=_MONITOR_INTERVAL_S) \
                if assigned else {}
            if not assigned:
                await asyncio.wait_for(consumer.topics(), timeout=_MONITOR_INTERVAL_S)
            state.broker_reachable = True
        except (TimeoutError, KafkaError) as exc:
            if state.broker_reachable:
                log.warning("broker unreachable: %s", exc)
            state.broker_reachable = False
            continue
        committed = runner.tracker.committed_positions()
        for tp, end in ends.items():
            position = committed.get(TopicPartition(tp.topic, tp.partition))
            if position is None:
                continue
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))


class _ReadyState:
    def __init__(self) -> None:
        self.engine: Any = None
        self.broker_reachable = False

    def checks(self, runner_ref: list[StreamRunner]) -> dict[str, bool]:
        return {
            "engine_loaded": bool(self.engine is not None and self.engine.ready()),
            "group_joined": bool(runner_ref and runner_ref[0].group_joined),
            "broker_reachable": self.broker_reachable,
        }

    def loop_alive(self, runner_ref: list[StreamRunner]) -> bool:
        return not runner_ref or time.monotonic() - runner_ref[0].last_loop < _STALL_LIMIT_S


async def _stop_quietly(stopping: Any, name: str) -> None:
    try:
        await asyncio.wait_for(stopping, timeout=_SHUTDOWN_MARGIN_S)
    except Exception as exc:  # shutting down: report and go on closing the rest
        log.warning("stopping the %s: %s", name, exc)
