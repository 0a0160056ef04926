"""What ``/healthz`` and ``/readyz`` report for the ``run`` command.

One status object exists from the start (the HTTP endpoints answer while the model loads) and
each part updates what it knows: the wiring sets the engine, the lag monitor the broker's
reachability, the runner the group membership and the time its loop last went round.
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
        loop_alive = self.last_loop is None or time.monotonic() - self.last_loop < STALL_LIMIT_S
        return {"event_loop": True, "main_loop": loop_alive}
