"""``ner-worker run`` with ``NER_PROCESSES=2`` on the real broker: two stream processes sharing
one engine host, each an ordinary member of the group; one /metrics, /readyz and /healthz for all
(/metrics with every process's own process_* series, labelled, and the engine host's series).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from tests.chaos.harness import expected_dead, produce, read_results, tally
from tests.fixtures.kafka import committed_offsets, create_topics, stream_env, stream_names
from tests.fixtures.served import metric_total
from tests.integration.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PARTITIONS = 4
DOCUMENTS = 1200


def wait_for(condition: Callable[[], bool], what: str, worker: WorkerProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}\n{worker.log()}")
        time.sleep(0.25)


async def members_with_partitions(bootstrap: str, group: str) -> int:
    """How many members of ``group`` the broker shows with at least one partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (group_state,) = described.to_object()["groups"]
    assigned = 0
    for member in group_state["members"]:
        assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
        assigned += any(partitions for _, partitions in assignment.assignment)
    return assigned


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


class TwoProcesses:
    def __init__(self, bootstrap: str, tmp_path: Path, **settings: str) -> None:
        self.bootstrap = bootstrap
        self.names = stream_names("procs")
        asyncio.run(create_topics(bootstrap, {self.names["in"]: PARTITIONS, self.names["out"]: PARTITIONS,
                                              self.names["dead"]: 1}))
        self.worker = WorkerProcess({
            **stream_env(self.names, bootstrap), "NER_PROCESSES": "2", "NER_SESSION_TIMEOUT_MS": "6000",
            "NER_DRAIN_TIMEOUT_S": "10", "NER_TRANSACTION_TIMEOUT_MS": "10000", **settings,
        }, tmp_path / "worker.log")

    def start(self) -> WorkerProcess:
        self.worker.start()
        self.worker.wait_ready(timeout=240)
        return self.worker

    def committed(self) -> dict[int, int | None]:
        return asyncio.run(committed_offsets(self.bootstrap, self.names["group"], self.names["in"], PARTITIONS))

    def all_committed(self) -> bool:
        return sum(position or 0 for position in self.committed().values()) >= DOCUMENTS

    def acknowledged(self) -> float:
        return (self.worker.metric("ner_records_published_total")
                + self.worker.metric("ner_records_dead_lettered_total"))

    def readiness(self) -> tuple[int, dict[str, bool]]:
        status, body = self.worker.get("/readyz")
        checks: dict[str, bool] = orjson.loads(body)["checks"]
        return status, checks


Figures = tuple[float, float, float]
"""CPU seconds, resident bytes, start time (Unix seconds) of one process."""


def proc_figures(pid: int) -> Figures:
    """CPU seconds, resident bytes and start time (Unix seconds) of ``pid``, read from /proc here."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    # Summed as prometheus_client sums them, to compare floats exactly.
    return (int(fields[11]) / ticks + int(fields[12]) / ticks, int(fields[21]) * os.sysconf("SC_PAGESIZE"),
            int(fields[19]) / ticks + boot)


def stream_index(pid: int) -> int:
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return int(arguments[arguments.index("--index") + 1])


def scrape_with_process_figures(worker: WorkerProcess) -> tuple[str, dict[str, Figures], dict[str, Figures]]:
    """One scrape of /metrics, with every process's /proc figures read just before and just after."""
    assert worker.process is not None
    (host,) = worker.children("worker.engine.host")
    pids = {f"stream-{stream_index(pid)}": pid for pid in worker.children("worker.stream.member")}
    pids |= {"engine-host": host, "supervisor": worker.process.pid}
    assert set(pids) == {"stream-1", "stream-2", "engine-host", "supervisor"}
    before = {name: proc_figures(pid) for name, pid in pids.items()}
    text = worker.get("/metrics")[1]
    after = {name: proc_figures(pid) for name, pid in pids.items()}
    return text, before, after


def check_process_metrics(text: str, before: dict[str, Figures], after: dict[str, Figures]) -> None:
    """Every process's own process_* series, labelled by process: its figures, not another's."""
    for name in before:
        labels = {"process": name}
        cpu = metric_total(text, "process_cpu_seconds_total", labels)
        resident = metric_total(text, "process_resident_memory_bytes", labels)
        assert before[name][0] <= cpu <= after[name][0], (name, before[name], cpu, after[name])
        assert resident == pytest.approx(before[name][1], rel=0.1), (name, resident, before[name][1])
        # The start time names the pid: a figure read for another process would not match.
        assert metric_total(text, "process_start_time_seconds", labels) == pytest.approx(before[name][2], abs=1e-6)
        assert metric_total(text, "process_open_fds", labels) > 0
    assert not any(line.startswith("process_cpu_seconds_total ") for line in text.splitlines())


def check_engine_host_metrics(text: str) -> None:
    """The engine host's own series: every stream batch reached it and was merged; nothing failed."""
    requests = metric_total(text, "ner_engine_host_requests_total")
    assert requests >= 1
    assert metric_total(text, "ner_engine_host_batch_requests_sum") == requests
    assert 1 <= metric_total(text, "ner_engine_host_batch_requests_count") <= requests
    assert metric_total(text, "ner_engine_host_batch_tokens_sum") >= metric_total(text, "ner_tokens_processed_total")
    assert metric_total(text, "ner_engine_host_failed_requests_total") == 0
    assert metric_total(text, "ner_engine_host_inflight_requests") == 0
    busy = metric_total(text, "ner_engine_host_busy_seconds_total")
    assert 0 < busy <= metric_total(text, "ner_engine_host_batch_seconds_sum")


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_two_processes_share_the_partitions_and_drain_and_commit_on_sigterm(
        kafka_bootstrap: str, tmp_path: Path, delivery: str) -> None:
    # At-least-once commits only when a process drains here: the offsets committed at the end
    # prove that every process committed its own partitions on SIGTERM. (Exactly-once commits
    # the offsets with each transaction.)
    run = TwoProcesses(kafka_bootstrap, tmp_path, NER_DELIVERY=delivery, NER_COMMIT_INTERVAL_MS="600000")
    worker = run.start()
    try:
        status, checks = run.readiness()
        assert status == 200
        for index in (1, 2):
            assert checks[f"process_{index}_group_joined"] and checks[f"process_{index}_engine_loaded"], checks
        assert checks["engine_host"]
        wait_for(lambda: asyncio.run(members_with_partitions(kafka_bootstrap, run.names["group"])) == 2,
                 "both stream processes own partitions", worker)
        asyncio.run(produce(kafka_bootstrap, run.names["in"], DOCUMENTS, PARTITIONS))
        wait_for(lambda: run.acknowledged() >= DOCUMENTS, "every record published or dead-lettered", worker)
        # One endpoint, every process's own figures, labelled (with /proc read around the scrape).
        text, before, after = scrape_with_process_figures(worker)
        check_process_metrics(text, before, after)
        check_engine_host_metrics(text)
        if delivery == "at-least-once":
            assert not any(run.committed().values()), "nothing is committed before the drain"
        received = worker.metric("ner_records_received_total")
        published = worker.metric("ner_records_published_total")
        dead_lettered = worker.metric("ner_records_dead_lettered_total")
        assert worker.metric("ner_assigned_partitions") == PARTITIONS  # the sum over both processes
        assert worker.get("/healthz")[0] == 200
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    ends = asyncio.run(end_offsets(kafka_bootstrap, run.names["in"]))
    assert run.committed() == ends
    outputs, dead = asyncio.run(read_results(kafka_bootstrap, run.names["out"], run.names["dead"], DOCUMENTS,
                                             delivery, timeout=60))
    result = tally("two processes", delivery, {p: ends[p] for p in range(PARTITIONS)}, outputs, dead)
    assert result.lost == 0 and result.order_violations == 0, result
    assert result.dead_letters == expected_dead(DOCUMENTS)
    assert result.duplicated == 0, result  # no process died: nothing is read twice
    # /metrics: both processes' counters, summed, are exactly what reached the topics.
    assert received == DOCUMENTS
    assert published == result.outputs and dead_lettered == result.dead_letters


def test_a_killed_stream_process_is_restarted_without_loss(kafka_bootstrap: str, tmp_path: Path) -> None:
    run = TwoProcesses(kafka_bootstrap, tmp_path, NER_COMMIT_INTERVAL_MS="200", NER_MAX_BATCH_DOCUMENTS="64")
    asyncio.run(produce(kafka_bootstrap, run.names["in"], DOCUMENTS * 3, PARTITIONS))
    worker = run.start()
    assert worker.process is not None
    try:
        members = worker.children("worker.stream.member")
        assert len(members) == 2, members
        os.kill(members[0], signal.SIGKILL)
        time.sleep(0.5)
        status, checks = run.readiness()
        assert status == 503 and not all(checks.values()), checks
        wait_for(lambda: worker.metric("ner_stream_process_restarts_total") == 1, "a restart", worker)
        wait_for(lambda: run.readiness()[0] == 200, "ready again", worker)
        replacement = worker.children("worker.stream.member")
        assert len(replacement) == 2 and members[0] not in replacement and members[1] in replacement
        wait_for(lambda: sum(p or 0 for p in run.committed().values()) >= DOCUMENTS * 3, "all committed", worker)
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    outputs, dead = asyncio.run(read_results(kafka_bootstrap, run.names["out"], run.names["dead"], DOCUMENTS * 3,
                                             "at-least-once", timeout=60))
    per_partition = {p: DOCUMENTS * 3 // PARTITIONS for p in range(PARTITIONS)}
    result = tally("stream process killed", "at-least-once", per_partition, outputs, dead)
    assert result.lost == 0 and result.order_violations == 0, result


def test_an_engine_host_that_dies_makes_the_worker_unready_and_stops_it(kafka_bootstrap: str,
                                                                          tmp_path: Path) -> None:
    run = TwoProcesses(kafka_bootstrap, tmp_path)
    worker = run.start()
    assert worker.process is not None
    try:
        (host,) = worker.children("worker.engine.host")
        os.kill(host, signal.SIGKILL)
        time.sleep(0.1)
        status, checks = run.readiness()
        assert status == 503 and checks["engine_host"] is False, checks
        code = worker.process.wait(timeout=60)
    finally:
        worker.kill()
    assert code == 1, worker.log()
    assert "the engine host exited" in worker.log_path.read_text()
