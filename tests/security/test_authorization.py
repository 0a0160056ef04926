"""The worker against a broker with an authorizer: a permission missing is a clear stop.

One broker for the module (``acl_broker.py``); each test makes its own topics and group, grants
its own SASL/PLAIN user the ACLs it names and nothing else, and runs the real worker as a process.
Every scenario prints its counts (inputs, outputs, dead letters, lost, duplicated, order
violations); a stop must leave nothing committed past what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from tests.fixtures.kafka import committed_offsets, create_topics, read_topic, stream_env, stream_names
from tests.integration.test_stream_faults import Accounting, produce, small
from tests.integration.worker_process import WorkerProcess
from tests.security.acl_broker import SASL, AclBroker, new_acl_broker

pytestmark = [pytest.mark.security, pytest.mark.integration]

PASSWORDS = {"ner-full": "full-Pw-2b7d41c9", "ner-no-txn": "notxn-Pw-8e03fa52", "ner-no-write": "nowrite-Pw-61c9e2d7",
             "ner-no-group": "nogroup-Pw-0a4f7c13"}
INPUTS = 20
EXIT_UNFINISHED = 1  # worker/stream/command.py: stopped on a fault without committing unfinished records
Grant = tuple[ResourceType, str, AclOperation]


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclBroker]:
    with new_acl_broker(tmp_path_factory.mktemp("acl-kafka"), PASSWORDS).running("broker with ACLs") as broker:
        yield broker


def stream_grants(names: dict[str, str], *, write_output: bool = True, read_group: bool = True) -> list[Grant]:
    """What a worker needs of its topics and group: read the input, write the outputs, commit."""
    grants: list[Grant] = [(ResourceType.TOPIC, names["in"], AclOperation.READ),
                           (ResourceType.TOPIC, names["out"], AclOperation.DESCRIBE),
                           (ResourceType.TOPIC, names["dead"], AclOperation.WRITE)]
    if write_output:
        grants.append((ResourceType.TOPIC, names["out"], AclOperation.WRITE))
    if read_group:
        grants.append((ResourceType.GROUP, names["group"], AclOperation.READ))
    return grants


def prepare(broker: AclBroker, prefix: str, user: str, grants_of: list[Grant] | None = None,
            *, write_output: bool = True, read_group: bool = True, transactional: bool = False) -> dict[str, str]:
    """Topics with ``INPUTS`` documents on the input, and the user's ACLs."""
    names = stream_names(prefix)
    asyncio.run(create_topics(broker.bootstrap(), {names["in"]: 1, names["out"]: 1, names["dead"]: 1}))
    asyncio.run(produce(broker.bootstrap(), names["in"], [(f"k{n}".encode(), small(n)) for n in range(INPUTS)]))
    broker.grant(user, [*stream_grants(names, write_output=write_output, read_group=read_group), *(grants_of or [])])
    if transactional:  # every transactional id of this worker starts with its group id (the prefix below)
        broker.grant(user, [(ResourceType.TRANSACTIONAL_ID, names["group"], AclOperation.WRITE)],
                     ResourcePatternType.PREFIXED)
    return names


def start(broker: AclBroker, names: dict[str, str], user: str, delivery: str, tmp_path: Path,
          **extra: str) -> WorkerProcess:
    env = {**stream_env(names, broker.bootstrap(SASL)), "NER_SECURITY_PROTOCOL": SASL, "NER_SASL_MECHANISM": "PLAIN",
           "NER_SASL_USERNAME": user, "NER_SASL_PASSWORD": PASSWORDS[user], "NER_DELIVERY": delivery,
           "NER_TRANSACTIONAL_ID_PREFIX": names["group"], "NER_COMMIT_INTERVAL_MS": "200",
           "NER_MAX_LENGTH": "64", "NER_STRIDE": "16", "NER_CONNECT_RETRY_TIMEOUT_S": "10", **extra}
    return WorkerProcess(env, tmp_path / "worker.log").start()


def watch_until_exit(worker: WorkerProcess, timeout_s: float) -> tuple[int | None, set[int], float]:
    """Poll /readyz until the worker exits; its exit code (None: still running), the answers, the seconds."""
    assert worker.process is not None
    answers: set[int] = set()
    started = time.monotonic()
    while worker.process.poll() is None and time.monotonic() - started < timeout_s:
        with contextlib.suppress(OSError):
            answers.add(worker.get("/readyz")[0])
        time.sleep(0.2)
    return worker.process.poll(), answers, time.monotonic() - started


def accounting(broker: AclBroker, names: dict[str, str], scenario: str, *, outputs: int) -> Accounting:
    """Where each input went, with ``outputs`` expected (and whatever else is on the topics)."""
    out = asyncio.run(read_topic(broker.bootstrap(), names["out"], expect=outputs, isolation_level="read_committed"))
    dead = asyncio.run(read_topic(broker.bootstrap(), names["dead"], expect=0, isolation_level="read_committed"))
    acc = Accounting.of(INPUTS, out, dead)
    # An input past the committed offset is not lost: the group's next worker reads it.
    position = committed(broker, names) or 0
    lost = [offset for offset in acc.lost if offset < position]
    print(f"{scenario}: inputs={acc.inputs} outputs={sum(acc.outputs.values())} "
          f"dead_letters={sum(acc.dead.values())} uncommitted={INPUTS - position} lost={len(lost)} "
          f"duplicated={acc.duplicated} order_violations={acc.order_violations}")
    assert lost == []
    return acc


def committed(broker: AclBroker, names: dict[str, str]) -> int | None:
    return asyncio.run(committed_offsets(broker.bootstrap(), names["group"], names["in"], 1))[0]


def test_exactly_once_without_the_transactional_id_acl_stops_naming_it(acl_broker: AclBroker, tmp_path: Path) -> None:
    names = prepare(acl_broker, "acl-no-txn", "ner-no-txn")
    worker = start(acl_broker, names, "ner-no-txn", "exactly-once", tmp_path)
    try:
        code, ready, seconds = watch_until_exit(worker, timeout_s=90)
    finally:
        worker.kill()
    acc = accounting(acl_broker, names, f"no TransactionalId ACL exactly-once exit={code} after={seconds:.1f}s",
                     outputs=0)
    log = worker.log()
    assert code == EXIT_UNFINISHED, log
    assert 503 in ready and 200 not in ready, ready  # answered, and never ready
    assert "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" in log and "TransactionalId" in log, log
    assert committed(acl_broker, names) is None  # nothing committed: every input is read again once allowed
    assert sum(acc.outputs.values()) == 0 and sum(acc.dead.values()) == 0


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_without_write_on_the_output_topic_the_worker_stops_naming_it(acl_broker: AclBroker, tmp_path: Path,
                                                                     delivery: str) -> None:
    names = prepare(acl_broker, "acl-no-write", "ner-no-write", write_output=False,
                    transactional=delivery == "exactly-once")
    worker = start(acl_broker, names, "ner-no-write", delivery, tmp_path)
    try:
        code, _, seconds = watch_until_exit(worker, timeout_s=90)
        rewinds = worker.log_path.read_text(errors="replace").count("rewinding to offset")
    finally:
        worker.kill()
    acc = accounting(acl_broker, names, f"no WRITE on the output {delivery} exit={code} after={seconds:.1f}s "
                                        f"rewinds={rewinds}", outputs=0)
    log = worker.log()
    assert code == EXIT_UNFINISHED, log
    assert "TOPIC_AUTHORIZATION_FAILED" in log and names["out"] in log and "WRITE" in log, log
    assert rewinds == 0  # a permission is not retried: the first refusal stops the worker
    assert committed(acl_broker, names) is None
    assert sum(acc.outputs.values()) == 0 and sum(acc.dead.values()) == 0  # no dead letter stands in for it


def test_with_two_stream_processes_a_permission_denied_stops_the_worker_without_restarts(
        acl_broker: AclBroker, tmp_path: Path) -> None:
    # A restarted stream process would only meet the same denial (three times a minute, then the
    # worker stops anyway): the first one stops the worker, as it does with one process.
    names = prepare(acl_broker, "acl-no-write-2p", "ner-no-write", write_output=False)
    worker = start(acl_broker, names, "ner-no-write", "at-least-once", tmp_path, NER_PROCESSES="2")
    try:
        code, ready, seconds = watch_until_exit(worker, timeout_s=120)
    finally:
        worker.kill()
    accounting(acl_broker, names, f"no WRITE on the output, two processes exit={code} after={seconds:.1f}s",
               outputs=0)
    log = worker.log_path.read_text(errors="replace")
    assert code == EXIT_UNFINISHED, worker.log()
    assert "TOPIC_AUTHORIZATION_FAILED" in log and "a restart would meet the same refusal" in log, worker.log()
    assert "restarting it" not in log, worker.log()
    assert 200 not in ready, ready
    assert committed(acl_broker, names) is None


def test_without_read_on_the_group_the_worker_stops_naming_it(acl_broker: AclBroker, tmp_path: Path) -> None:
    names = prepare(acl_broker, "acl-no-group", "ner-no-group", read_group=False)
    worker = start(acl_broker, names, "ner-no-group", "at-least-once", tmp_path)
    try:
        code, ready, seconds = watch_until_exit(worker, timeout_s=90)
    finally:
        worker.kill()
    accounting(acl_broker, names, f"no READ on the group at-least-once exit={code} after={seconds:.1f}s", outputs=0)
    log = worker.log()
    assert code == EXIT_UNFINISHED, log
    assert 503 in ready and 200 not in ready, ready
    assert "GROUP_AUTHORIZATION_FAILED" in log and "READ on the consumer group" in log, log
    assert "Traceback" not in worker.log_path.read_text(errors="replace"), log


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_with_every_acl_granted_everything_is_annotated(acl_broker: AclBroker, tmp_path: Path, delivery: str) -> None:
    names = prepare(acl_broker, "acl-full", "ner-full", transactional=delivery == "exactly-once")
    worker = start(acl_broker, names, "ner-full", delivery, tmp_path)
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 60
        while committed(acl_broker, names) != INPUTS:
            assert time.monotonic() < deadline and worker.process and worker.process.poll() is None, worker.log()
            time.sleep(0.5)
        code, _ = worker.terminate()
    finally:
        worker.kill()
    acc = accounting(acl_broker, names, f"every ACL {delivery}", outputs=INPUTS)
    assert code == 0, worker.log()
    assert acc.lost == [] and acc.duplicated == 0 and acc.order_violations == 0
    assert sorted(acc.outputs) == list(range(INPUTS)) and sum(acc.dead.values()) == 0
