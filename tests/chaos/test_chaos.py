"""Chaos on the real broker: SIGKILLed workers, scaling 1 → 3 → 1, a broker restart.

Each scenario streams 100,000 documents over 6 partitions (``CHAOS_DOCUMENTS`` overrides the
count; the SIGKILL scenario takes half as many again, so that all 20 kills land mid-stream),
disturbs the system while it works, waits until the group has committed every input,
then reads the output and dead-letter topics whole and counts lost, duplicated and out-of-order
records. Every loop is bounded in count and time. The table is printed and appended to
``CHAOS_REPORT`` when that variable names a file.

Every scenario also runs with workers of two stream processes sharing an engine host
(``NER_PROCESSES=2``), sized to finish in a few minutes on a small machine: 20,000 documents
(``CHAOS_DOCUMENTS_N2``), and for the whole-worker kills six times as many with 4 kills (a
worker starts its engine host, then its stream processes: slower than one process). One more
scenario of its own kills single stream processes three times (the most restarts a worker
allows within a minute), which the worker restarts, on three times as many documents.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import TABLE_HEADER, Tally, expected_dead, produce, read_results, tally
from tests.fixtures.kafka import committed_offsets, create_topics, stream_env, stream_names
from tests.fixtures.ports import free_port
from tests.integration.worker_process import REPO, WorkerProcess

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

DOCUMENTS = int(os.environ.get("CHAOS_DOCUMENTS", "100000"))
DOCUMENTS_N2 = int(os.environ.get("CHAOS_DOCUMENTS_N2", "20000"))
PARTITIONS = 6
FINISH_TIMEOUT_S = 900
KAFKA_TOOL = REPO / "tools" / "kafka" / "kafka-local.sh"
RESULTS: list[Tally] = []


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    positions = await committed_offsets(bootstrap, group, topic, PARTITIONS)
    return sum(position or 0 for position in positions.values())


def wait_until_committed(bootstrap: str, group: str, topic: str, workers: list[WorkerProcess], documents: int,
                         timeout: float = FINISH_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if asyncio.run(committed_total(bootstrap, group, topic)) >= documents:
                return
        except Exception:  # the broker may be restarting
            pass
        time.sleep(2)
    logs = "\n".join(w.log() for w in workers)
    raise AssertionError(f"inputs not all committed after {timeout}s\n{logs}")


class Cluster:
    """Worker processes of one consumer group on one set of topics."""

    def __init__(self, bootstrap: str, delivery: str, tmp_path: Path, processes: int = 1,
                 documents: int | None = None) -> None:
        self.bootstrap = bootstrap
        self.delivery = delivery
        self.tmp_path = tmp_path
        self.processes = processes
        self.documents = documents or (DOCUMENTS if processes == 1 else DOCUMENTS_N2)
        self.names = stream_names("chaos")
        asyncio.run(create_topics(bootstrap, {self.names["in"]: PARTITIONS, self.names["out"]: PARTITIONS,
                                              self.names["dead"]: 1}))
        asyncio.run(produce(bootstrap, self.names["in"], self.documents, PARTITIONS))
        self.workers: list[WorkerProcess] = []
        self.started = 0

    def start_worker(self) -> WorkerProcess:
        self.started += 1
        worker = WorkerProcess({
            **stream_env(self.names, self.bootstrap), "NER_DELIVERY": self.delivery,
            "NER_SESSION_TIMEOUT_MS": "6000", "NER_COMMIT_INTERVAL_MS": "200", "NER_DRAIN_TIMEOUT_S": "10",
            "NER_TRANSACTION_TIMEOUT_MS": "10000", "NER_CONNECT_RETRY_TIMEOUT_S": "120",
            "NER_MAX_BATCH_DOCUMENTS": "512", "NER_MAX_BATCH_WAIT_MS": "20", "NER_PROCESSES": str(self.processes),
        }, self.tmp_path / f"worker-{self.started}.log").start()
        self.workers.append(worker)
        return worker

    def wait_done(self) -> None:
        wait_until_committed(self.bootstrap, self.names["group"], self.names["in"], self.workers, self.documents)

    def finish(self, scenario: str) -> Tally:
        self.wait_done()
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.terminate()
        outputs, dead = asyncio.run(read_results(self.bootstrap, self.names["out"], self.names["dead"],
                                                 self.documents, self.delivery, timeout=300))
        per_partition = {p: self.documents // PARTITIONS + (1 if p < self.documents % PARTITIONS else 0)
                         for p in range(PARTITIONS)}
        if self.processes > 1:
            scenario += f", {self.processes} processes per worker"
        result = tally(scenario, self.delivery, per_partition, outputs, dead)
        RESULTS.append(result)
        print(f"\n{TABLE_HEADER}\n{result.row()}")
        report = os.environ.get("CHAOS_REPORT")
        if report:
            with open(report, "a") as handle:
                handle.write(result.row() + "\n")
        return result

    def ready_then_a_moment(self, worker: WorkerProcess, rng: random.Random) -> bool:
        """Wait until ``worker`` is ready and a random moment more; whether work is still unfinished."""
        worker.wait_ready(timeout=240)
        time.sleep(rng.uniform(0.5, 3.0))
        return asyncio.run(committed_total(self.bootstrap, self.names["group"], self.names["in"])) < self.documents

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def cluster_factory(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(delivery: str, bootstrap: str | None = None, processes: int = 1, documents: int | None = None) -> Cluster:
        cluster = Cluster(bootstrap or kafka_bootstrap, delivery, tmp_path, processes, documents)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.kill_all()


def check(result: Tally) -> None:
    assert result.lost == 0, result
    assert result.order_violations == 0, result
    assert result.dead_letters >= expected_dead(result.inputs), result
    if result.delivery == "exactly-once":
        assert result.duplicated == 0, result


PROCESSES = pytest.mark.parametrize("processes", [1, 2])
DELIVERIES = pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])


@DELIVERIES
@PROCESSES
def test_sigkill_twenty_times(cluster_factory: Callable[..., Cluster], delivery: str, processes: int) -> None:
    # Every kill must hit unfinished work, so the stream must outlast the kill cycles. One process:
    # a cycle processes about 4,000 documents since the CPU-cost work, and 100,000 were all done
    # before the last kills; 150,000 keep every kill mid-stream. Two processes a worker: each
    # restart also starts an engine host, and a cycle processes 12,000-16,000 documents; 120,000
    # and four kills leave a margin of about two.
    cluster = cluster_factory(delivery, processes=processes,
                              documents=DOCUMENTS * 3 // 2 if processes == 1 else 6 * DOCUMENTS_N2)
    kills = 20 if processes == 1 else 4
    rng = random.Random(20)
    worker = cluster.start_worker()
    mid_stream = 0
    for _ in range(kills):
        mid_stream += cluster.ready_then_a_moment(worker, rng)
        worker.kill()  # the whole worker: supervisor and stream processes (the engine host follows)
        worker = cluster.start_worker()
    result = cluster.finish(f"SIGKILL x{kills}")
    check(result)
    assert mid_stream == kills, f"only {mid_stream} of {kills} kills hit unfinished work"


@DELIVERIES
def test_stream_processes_killed_and_restarted(cluster_factory: Callable[..., Cluster], delivery: str) -> None:
    # Three kills: the most restarts the worker allows within a minute (a fourth would stop it).
    cluster = cluster_factory(delivery, processes=2, documents=3 * DOCUMENTS_N2)
    rng = random.Random(16)
    worker = cluster.start_worker()
    kills = 3
    mid_stream = 0
    for kill in range(kills):
        mid_stream += cluster.ready_then_a_moment(worker, rng)
        os.kill(rng.choice(worker.children("worker.stream.member")), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while worker.metric("ner_stream_process_restarts_total") < kill + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert worker.metric("ner_stream_process_restarts_total") == kills, worker.log()
    result = cluster.finish(f"stream process SIGKILL x{kills}")
    check(result)
    assert mid_stream == kills, f"only {mid_stream} of {kills} kills hit unfinished work"


@DELIVERIES
@PROCESSES
def test_scale_one_three_one(cluster_factory: Callable[..., Cluster], delivery: str, processes: int) -> None:
    cluster = cluster_factory(delivery, processes=processes)
    first = cluster.start_worker()
    first.wait_ready(timeout=240)
    time.sleep(3)
    extra = [cluster.start_worker(), cluster.start_worker()]  # joins: rebalances 2 and 3
    for worker in extra:
        worker.wait_ready(timeout=240)
    time.sleep(5)
    for worker in extra:  # leaves: rebalances 4 and 5
        code, _ = worker.terminate()
        assert code == 0, worker.log()
    cluster.wait_done()
    assert first.metric("ner_rebalances_total", {"event": "assigned"}) >= 3
    check(cluster.finish("workers 1 → 3 → 1"))


@DELIVERIES
@PROCESSES
def test_broker_restart(cluster_factory: Callable[..., Cluster], delivery: str, processes: int,
                        tmp_path: Path) -> None:
    # A broker of this test's own: the session's shared broker keeps running for the other tests.
    port, controller = free_port(), free_port()
    env = {**os.environ, "KAFKA_LOCAL_HOME": str(tmp_path / "kafka"), "KAFKA_PORT": str(port),
           "KAFKA_CONTROLLER_PORT": str(controller)}
    subprocess.run([str(KAFKA_TOOL), "start"], env=env, check=True, capture_output=True)
    try:
        cluster = cluster_factory(delivery, f"127.0.0.1:{port}", processes)
        worker = cluster.start_worker()
        worker.wait_ready(timeout=240)
        tenth = cluster.documents // 10
        deadline = time.monotonic() + 300
        while worker.metric("ner_records_published_total") < tenth and time.monotonic() < deadline:
            time.sleep(0.2)
        published_at_stop = worker.metric("ner_records_published_total")
        assert tenth <= published_at_stop < cluster.documents, "the broker must stop mid-stream"
        subprocess.run([str(KAFKA_TOOL), "stop"], env=env, check=True, capture_output=True)
        time.sleep(3)
        subprocess.run([str(KAFKA_TOOL), "start"], env=env, check=True, capture_output=True)
        check(cluster.finish("broker restart"))
    finally:
        subprocess.run([str(KAFKA_TOOL), "stop"], env=env, check=False, capture_output=True)


def teardown_module() -> None:
    if RESULTS:
        print(f"\n{TABLE_HEADER}\n" + "\n".join(result.row() for result in RESULTS))
