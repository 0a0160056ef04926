"""The stop's hard bound ends a process whose clean-up hangs, with the documented exit code."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from worker.stream.shutdown import OVERRAN_EXIT_CODE

REPO = Path(__file__).resolve().parents[3]

_HANGING_STOP = """
import logging, time
from worker.stream.shutdown import ShutdownDeadline
logging.basicConfig()
deadline = ShutdownDeadline(0.2, bound_s=0.3)
deadline.arm()
time.sleep(60)  # a clean-up that never returns, blocking the event loop's thread too
"""

_CLEAN_STOP = """
import time
from worker.stream.shutdown import ShutdownDeadline
deadline = ShutdownDeadline(0.1, bound_s=0.1)
deadline.arm()
deadline.disarm()
time.sleep(0.5)
"""


def test_a_stop_that_hangs_ends_the_process_at_drain_plus_bound_with_exit_1() -> None:
    started = time.monotonic()
    result = _python(_HANGING_STOP)
    assert result.returncode == OVERRAN_EXIT_CODE == 1
    assert time.monotonic() - started < 10
    assert "did not finish within 0.5s" in result.stderr


def test_a_disarmed_deadline_leaves_the_process_alone() -> None:
    result = _python(_CLEAN_STOP)
    assert result.returncode == 0, result.stderr


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
