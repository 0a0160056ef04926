"""How a stream process of several tells the supervisor its health and readiness.

Each stream process rewrites a small JSON file (its ``/healthz`` and ``/readyz`` checks) every
``REPORT_INTERVAL_S`` from its event loop; the supervisor reads the files when it is probed. A
file not rewritten for ``STALE_AFTER_S`` means the process's event loop is stuck: unhealthy.
Files are replaced atomically, so a reader never sees half a report.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from worker.stream.health import StreamStatus

REPORT_INTERVAL_S = 1.0
STALE_AFTER_S = 15.0


@dataclass(frozen=True, slots=True)
class MemberReport:
    health: dict[str, bool]
    readiness: dict[str, bool]
    age_s: float
    """Seconds since the process wrote it."""

    @property
    def fresh(self) -> bool:
        return self.age_s < STALE_AFTER_S


def write_report(path: Path, status: StreamStatus) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(orjson.dumps({"health": status.health(), "readiness": status.readiness()}))
    os.replace(partial, path)


def read_report(path: Path) -> MemberReport | None:
    """The last report, or None when there is none (yet) or it cannot be read."""
    try:
        written = path.stat().st_mtime
        data = orjson.loads(path.read_bytes())
        return MemberReport(_checks(data["health"]), _checks(data["readiness"]), max(0.0, time.time() - written))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _checks(raw: object) -> dict[str, bool]:
    if not isinstance(raw, dict):
        raise TypeError("checks are not an object")
    return {str(name): bool(value) for name, value in raw.items()}
