"""SIGTERM and SIGINT as an asyncio event, for every long-running command (``run``, ``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (a Kubernetes pod stop, or Ctrl-C) instead of raising.

    The command then drains its work itself. Where the loop cannot take signal handlers (not the
    main thread, or Windows), the default behaviour stays.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
