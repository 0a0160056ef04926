"""The bound on a stop: ``run`` ends within ``NER_DRAIN_TIMEOUT_S`` + ``SHUTDOWN_BOUND_S`` of it.

The drain, the last commit, leaving the group and closing the engine each have bounds of their
own, but a call that never returns (an engine close, a client stop) would still keep the process
up until Kubernetes kills it, with nothing said. Once a stop begins, a timer thread (it fires
even when the event loop is blocked) logs what happened and ends the process with exit 1 —
records not committed by then are read again by their partitions' next owner.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)

SHUTDOWN_BOUND_S = 10.0
"""Seconds a stop may take beyond ``NER_DRAIN_TIMEOUT_S`` (the last commit, leaving the group, closing)."""
OVERRAN_EXIT_CODE = 1
"""The exit status of a stop that overran its bound: unfinished records were not committed."""


class ShutdownDeadline:
    """Armed when a stop begins; disarmed once the process is done with its clean-up."""

    def __init__(self, drain_timeout_s: float, bound_s: float = SHUTDOWN_BOUND_S) -> None:
        self.seconds = drain_timeout_s + bound_s
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is None:
            self._timer = threading.Timer(self.seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        log.error("the stop did not finish within %.1fs (NER_DRAIN_TIMEOUT_S + %gs); exiting with %d, "
                  "unfinished records uncommitted", self.seconds, SHUTDOWN_BOUND_S, OVERRAN_EXIT_CODE)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(OVERRAN_EXIT_CODE)
