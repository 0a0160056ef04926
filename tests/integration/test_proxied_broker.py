"""The worker reaches its broker through a TCP proxy that drops every connection mid-stream.

A broker of its own (beside the default one) has a ``PROXIED`` listener that advertises the
proxy's port, so that every client connection after the first metadata answer also goes through
the proxy; its ``PLAINTEXT`` listener is for the test's own topics, producer and readers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.fixtures.kafka import KAFKA_TOOL, create_topics, read_topic, stream_env, stream_names
from tests.fixtures.ports import free_port
from tests.fixtures.tcp_proxy import TcpProxy
from tests.integration.worker_process import WorkerProcess
from tests.security.broker import _share_jars

pytestmark = pytest.mark.integration

DOCUMENTS = 1500


@dataclass
class ProxiedBroker:
    home: Path
    plain_port: int
    controller_port: int
    proxied_port: int
    proxy: TcpProxy

    @property
    def plain(self) -> str:
        return f"127.0.0.1:{self.plain_port}"

    @property
    def through_proxy(self) -> str:
        return f"127.0.0.1:{self.proxy.listen_port}"

    def tool(self, command: str) -> None:
        env = {**os.environ, "KAFKA_LOCAL_HOME": str(self.home), "KAFKA_PORT": str(self.plain_port),
               "KAFKA_CONTROLLER_PORT": str(self.controller_port),
               "KAFKA_EXTRA_PROPERTIES": str(self.home / "proxied.properties"), "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
               "PYTHON": sys.executable}
        proc = subprocess.run([str(KAFKA_TOOL), command], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"kafka-local.sh {command}: {proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedBroker]:
    home = tmp_path_factory.mktemp("proxied-broker")
    proxy_port, proxied_port = free_port(), free_port()
    proxy = TcpProxy(("127.0.0.1", proxied_port), proxy_port)
    instance = ProxiedBroker(home, free_port(), free_port(), proxied_port, proxy)
    (home / "proxied.properties").write_text(
        "listeners=PLAINTEXT://127.0.0.1:@KAFKA_PORT@,CONTROLLER://127.0.0.1:@KAFKA_CONTROLLER_PORT@,"
        f"PROXIED://127.0.0.1:{proxied_port}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:@KAFKA_PORT@,PROXIED://127.0.0.1:{proxy_port}\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT\n"
    )
    _share_jars(home / "lib")
    proxy.start()
    instance.tool("start")
    try:
        yield instance
    finally:
        instance.tool("stop")
        proxy.stop()


def test_connections_dropped_mid_stream_lose_no_record(broker: ProxiedBroker, tmp_path: Path) -> None:
    names = stream_names("proxied")
    asyncio.run(create_topics(broker.plain, {names["in"]: 2, names["out"]: 2, names["dead"]: 1}))
    broker.proxy.latency_s = 0.005
    worker = WorkerProcess({**stream_env(names, broker.through_proxy), "NER_MAX_BATCH_DOCUMENTS": "16",
                            "NER_COMMIT_INTERVAL_MS": "200", "NER_DRAIN_TIMEOUT_S": "5"}, tmp_path / "worker.log")
    try:
        worker.start().wait_ready()
        asyncio.run(_produce(broker.plain, names["in"]))
        drops, connections_before = 0, broker.proxy.connections
        deadline = time.monotonic() + 60
        while drops < 3:  # three times while the stream is under way
            assert time.monotonic() < deadline, worker.log()
            if worker.metric("ner_records_published_total") >= (drops + 1) * DOCUMENTS // 5:
                drops += 1 if broker.proxy.drop_connections() else 0
            time.sleep(0.05)
        published_at_last_drop = worker.metric("ner_records_published_total")
        outputs = asyncio.run(read_topic(broker.plain, names["out"], expect=DOCUMENTS - 1, timeout=180))
        dead = asyncio.run(read_topic(broker.plain, names["dead"], expect=1, timeout=30))
        code, _ = worker.terminate()
    finally:
        worker.kill()
    assert code == 0, worker.log()
    assert published_at_last_drop < DOCUMENTS - 1  # the drops hit the stream while it was under way
    assert broker.proxy.connections > connections_before  # and the clients had to connect again
    seen = [(int(h["partition"]), int(h["offset"])) for h in
            (orjson.loads(r.value or b"{}")["ner"]["source"] for r in outputs)]
    seen += [(int(dict(r.headers)["__connect.errors.partition"]), int(dict(r.headers)["__connect.errors.offset"]))
             for r in dead]
    expected = {(n % 2, n // 2) for n in range(DOCUMENTS)}
    lost = expected - set(seen)
    assert not lost, f"{len(lost)} input offsets in neither output nor dead letter: {sorted(lost)[:10]}"
    print(f"proxy drops: {broker.proxy.dropped} connections; inputs {DOCUMENTS}, outputs {len(outputs)}, "
          f"dead letters {len(dead)}, duplicated {len(seen) - len(set(seen))}")


async def _produce(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=20)
    await producer.start()
    try:
        for n in range(DOCUMENTS):  # one malformed record, the rest documents; partition n % 2
            value = b"not json" if n == DOCUMENTS // 2 else orjson.dumps({"id": n, "text": f"Angela Merkel {n}"})
            await producer.send(topic, value, partition=n % 2)
        await producer.flush()
    finally:
        await producer.stop()
