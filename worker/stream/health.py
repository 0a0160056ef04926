"""What ``/healthz`` and ``/readyz`` report for the ``run`` command.

One status object exists from the start (the HTTP endpoints answer while the model loads) and
each part updates what it knows: the wiring sets the engine, the lag monitor the broker's
reachability, the runner the group membership, the time its loop last went round and the time
its publisher last advanced (or had nothing to do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from worker.engine import Engine
from worker.formats import SchemaResolver

STALL_LIMIT_S = 60.0
"""A main loop that has not gone round for this long is reported unhealthy."""


@dataclass(slots=True)
class StreamStatus:
    engine: Engine | None = None
    broker_reachable: bool = False
    group_joined: bool = False
    last_loop: float | None = None
    """``time.monotonic()`` of the main loop's last round; None before it starts."""
    last_progress: float | None = None
    """``time.monotonic()`` when the publisher last advanced (a batch published, a record
    acknowledged) or had nothing to do; None before the main loop starts."""
    progress_limit_s: float = STALL_LIMIT_S
    """Work pending and no progress for this long: an engine call or a transaction that hangs."""
    resolver: SchemaResolver | None = None
    """Set for Schema Registry input formats: readiness then includes the registry's reachability."""

    def readiness(self) -> dict[str, bool]:
        checks = {
            "engine_loaded": bool(self.engine is not None and self.engine.ready()),
            "group_joined": self.group_joined,
            "broker_reachable": self.broker_reachable,
        }
        if self.resolver is not None:
            checks["schema_registry_reachable"] = self.resolver.reachable
        return checks

    def health(self) -> dict[str, bool]:
        now = time.monotonic()
        loop_alive = self.last_loop is None or now - self.last_loop < STALL_LIMIT_S
        publishing = self.last_progress is None or now - self.last_progress < self.progress_limit_s
        return {"event_loop": True, "main_loop": loop_alive, "publisher": publishing}
