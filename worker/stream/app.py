"""``ner-worker run``: wire settings, engine, Kafka clients, HTTP endpoints and the stream loop.

Start-up order matters: the engine loads first (slow, and pointless to join the group before),
then the Kafka clients connect (with a bounded retry), the topics are checked, and only then the
consumer subscribes. SIGTERM/SIGINT stop intake, drain in-flight work, commit, leave the group
and exit within ``NER_DRAIN_TIMEOUT_S`` + ``SHUTDOWN_BOUND_S`` (``worker/stream/shutdown.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable

from worker import __version__
from worker.annotator import Annotator
from worker.engine import Engine
from worker.formats.resolver import resolver_from_settings
from worker.http import HealthServer
from worker.settings import Settings, SettingsError
from worker.signals import stop_on_signals
from worker.stream.config import RunnerConfig
from worker.stream.connect import KafkaClients, StartupError, client_kwargs, connect, make_clients, partition_counts
from worker.stream.health import StreamStatus
from worker.stream.kafka_diagnostics import guard_secret_logging
from worker.stream.metrics import WorkerMetrics
from worker.stream.monitor import monitor
from worker.stream.publisher import Publisher
from worker.stream.runner import FatalStreamError, StreamRunner
from worker.stream.shutdown import SHUTDOWN_BOUND_S, ShutdownDeadline
from worker.stream.sink import Rewind, Sink, SinkFactory
from worker.stream.transactions import TransactionalPublisher, eos_producer_factory
from worker.stream.writer import RecordWriter
from worker.tracing import tracing_from_environment

__all__ = ["StartupError", "StatusReport", "run_worker"]

log = logging.getLogger(__name__)

_SHUTDOWN_MARGIN_S = SHUTDOWN_BOUND_S / 2  # for the runner's drain and last commit; the rest closes the clients


StatusReport = Callable[[StreamStatus], Awaitable[None]]
"""Runs beside the worker from its first moment until it ends (cancelled then): a stream process
of several reports its health and readiness to the supervisor with it."""


async def run_worker(settings: Settings, *, metrics: WorkerMetrics | None = None,
                     engine: Engine | None = None, report: StatusReport | None = None) -> None:
    """Run until SIGTERM/SIGINT. ``engine`` replaces the one ``NER_ENGINE`` names (benchmarks,
    the hosted engine of a stream process)."""
    metrics = metrics or WorkerMetrics()
    metrics.info.info({"version": __version__, "engine": settings.engine, "model": settings.model})
    status = StreamStatus()
    reporting = asyncio.ensure_future(report(status)) if report is not None else None
    try:
        await _run(settings, metrics, engine, status)
    finally:
        if reporting is not None:
            reporting.cancel()
            await asyncio.gather(reporting, return_exceptions=True)


async def _run(settings: Settings, metrics: WorkerMetrics, engine: Engine | None, status: StreamStatus) -> None:
    tracing = tracing_from_environment(service_version=__version__)  # off unless an OTLP endpoint is set
    http = HealthServer(metrics.registry, health=status.health, readiness=status.readiness,
                        host=settings.http_host, port=settings.http_port)
    guard_secret_logging(settings)
    common = client_kwargs(settings)  # before the slow engine load: a bad certificate or key fails at once
    try:
        resolver = status.resolver = resolver_from_settings(settings)
    except SettingsError as exc:
        raise StartupError(str(exc)) from None
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
    status.engine = annotator.engine
    clients = make_clients(settings, common)
    stop_requested = asyncio.Event()
    stop_on_signals(stop_requested)
    deadline = ShutdownDeadline(settings.drain_timeout_s)
    try:
        await connect(clients, settings)
        sink = await _sink_factory(clients, settings, metrics)
        status.broker_reachable = True
        runner = StreamRunner(RunnerConfig.from_settings(settings), clients.consumer, sink, annotator, metrics,
                              status, resolver=resolver, tracing=tracing)
        clients.consumer.subscribe([settings.input_topic], listener=runner.listener())
        await _run_until_stopped(runner, stop_requested, deadline,
                                 monitor(clients.consumer, runner.tracker.committed_positions, metrics, status))
    finally:
        status.engine = None
        await _stop_quietly(clients.consumer.stop(), "consumer")  # leaves the group: partitions move at once
        await _stop_quietly(clients.producer.stop(), "producer")
        await annotator.engine.close()
        if resolver is not None:
            await resolver.close()
        await http.close()
        tracing.shutdown()  # sends the spans still queued (nothing when tracing is off)
        deadline.disarm()


async def _sink_factory(clients: KafkaClients, settings: Settings, metrics: WorkerMetrics) -> SinkFactory:
    """How the runner builds its publisher (it passes its own ``rewind``), once the topics are checked."""
    partitions = await partition_counts(clients.producer, settings)
    writer = RecordWriter(settings, metrics, output_partitions=partitions[settings.output_topic],
                          dead_letter_partitions=partitions[settings.dead_letter_topic])
    if settings.delivery == "at-least-once":
        return lambda rewind: Publisher(clients.producer, writer, rewind=rewind, make_producer=clients.new_producer)
    make_producer = eos_producer_factory({**clients.common, **clients.producer_limits},
                                         client_id=f"{settings.client_id}-txn",
                                         transaction_timeout_ms=settings.transaction_timeout_ms)

    def transactional(rewind: Rewind) -> Sink:
        return TransactionalPublisher(writer, make_producer, group_id=settings.group_id,
                                      id_prefix=settings.transactional_id_prefix, rewind=rewind,
                                      start_timeout_s=settings.connect_retry_timeout_s,
                                      transaction_timeout_s=settings.transaction_timeout_ms / 1000)

    return transactional


async def _run_until_stopped(runner: StreamRunner, stop_requested: asyncio.Event, deadline: ShutdownDeadline,
                             watch: Awaitable[None]) -> None:
    """Run the loop (and ``watch`` beside it) until a stop is requested or the loop ends; then drain."""
    watcher = asyncio.ensure_future(watch)
    run_task = asyncio.create_task(runner.run())
    stop_wait = asyncio.create_task(stop_requested.wait())
    await asyncio.wait({run_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    deadline.arm()  # from here on the process ends within the bound, whatever hangs
    drain_timeout_s = runner.config.drain_timeout_s
    if not run_task.done():
        log.info("stop requested: draining in-flight work (at most %.1fs)", drain_timeout_s)
        runner.stop()
    try:
        await asyncio.wait_for(asyncio.shield(run_task), drain_timeout_s + _SHUTDOWN_MARGIN_S)
    except TimeoutError:  # the last commit did not answer: the records stay uncommitted
        raise FatalStreamError(f"the drain and the last commit did not end within NER_DRAIN_TIMEOUT_S + "
                               f"{_SHUTDOWN_MARGIN_S:g}s") from None
    finally:
        stop_wait.cancel()
        watcher.cancel()
        await _stop_quietly(runner.publisher.close(), "publisher")


async def _stop_quietly(stopping: Awaitable[None], name: str) -> None:
    try:
        await asyncio.wait_for(stopping, timeout=_SHUTDOWN_MARGIN_S)
    except Exception as exc:  # shutting down: report and go on closing the rest
        log.warning("stopping the %s: %s", name, exc)
