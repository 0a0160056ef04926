"""Wait until a Kafka broker answers a Metadata request; optionally create topics.

    python kafka_ready.py --bootstrap 127.0.0.1:9092 --timeout 120 \
        --pid-file .cache/kafka/kafka.pid --cluster-id ID --topic docs.in:3 --topic docs.out:3

Ready means: a Metadata request through aiokafka's admin client lists at least one broker (and,
with --cluster-id, reports that cluster, so another broker on the same port cannot pass for ours).
Each --topic NAME[:PARTITIONS] is then created (replication factor 1; "already exists" is fine)
and waited on until every partition has a leader.

Exit status: 0 ready, 1 timed out, 2 the broker process (--pid-file) died, 3 a topic cannot be
created as asked (e.g. it exists with another partition count).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

TOPIC_ALREADY_EXISTS = 36


class TopicError(Exception):
    """A topic request that retrying cannot fix."""


def process_alive(pid_file: str | None) -> bool:
    if not pid_file:
        return True
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    # A broker that died as the child of a shell that has not reaped it yet is a zombie:
    # kill(pid, 0) still succeeds, /proc/<pid>/stat says state Z.
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust kill(pid, 0)
    return state not in ("Z", "X")


async def ready_once(bootstrap: str, cluster_id: str | None, topics: dict[str, int]) -> str | None:
    """One attempt. Returns None when ready, or a short reason why not."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            return "metadata lists no broker yet"
        if cluster_id and cluster.get("cluster_id") != cluster_id:
            return f"{bootstrap} belongs to cluster {cluster.get('cluster_id')}, not {cluster_id}"
        if topics:
            resp = await admin.create_topics([NewTopic(n, p, 1) for n, p in topics.items()])
            for item in resp.to_object()["topic_errors"]:
                code = item["error_code"]
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    reason = f"create {item['topic']}: {for_code(code).__name__} ({code})"
                    if for_code(code).retriable:
                        return reason
                    raise TopicError(reason)
            for t in await admin.describe_topics(list(topics)):
                parts = t.get("partitions") or []
                if t["error_code"] != 0 or not parts:
                    return f"topic {t['topic']} not visible yet"
                if len(parts) != topics[t["topic"]]:
                    raise TopicError(f"topic {t['topic']} exists with {len(parts)} partitions")
                if any(p["leader"] < 0 for p in parts):
                    return f"topic {t['topic']} has a partition without leader"
        return None
    except TopicError:
        raise
    except Exception as exc:  # connection refused, timeouts, not-ready errors: try again
        return f"{type(exc).__name__}: {exc}"
    finally:
        await admin.close()


async def wait_ready(
    bootstrap: str,
    timeout: float,
    pid_file: str | None,
    cluster_id: str | None,
    topics: dict[str, int],
) -> int:
    deadline = time.monotonic() + timeout
    reason = "not tried"
    while time.monotonic() < deadline:
        if not process_alive(pid_file):
            print(f"kafka_ready: broker process is gone ({pid_file})", file=sys.stderr)
            return 2
        try:
            reason_or_none = await ready_once(bootstrap, cluster_id, topics)
        except TopicError as exc:
            print(f"kafka_ready: {exc}", file=sys.stderr)
            return 3
        if reason_or_none is None:
            return 0
        reason = reason_or_none
        await asyncio.sleep(0.25)
    print(f"kafka_ready: gave up on {bootstrap} after {timeout:.0f}s: {reason}", file=sys.stderr)
    return 1


def parse_topic(spec: str) -> tuple[str, int]:
    name, _, partitions = spec.partition(":")
    if not name or (partitions and not partitions.isdigit()):
        raise argparse.ArgumentTypeError(f"expected NAME[:PARTITIONS], got {spec!r}")
    return name, int(partitions or 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--pid-file")
    ap.add_argument("--cluster-id", help="require this cluster id in the Metadata answer")
    ap.add_argument("--topic", action="append", default=[], type=parse_topic, metavar="NAME[:PARTITIONS]")
    args = ap.parse_args()
    # aiokafka logs every refused connection while the broker is still starting.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    topics = dict(args.topic)
    return asyncio.run(wait_ready(args.bootstrap, args.timeout, args.pid_file, args.cluster_id or None, topics))


if __name__ == "__main__":
    sys.exit(main())
