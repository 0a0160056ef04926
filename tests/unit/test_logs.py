"""The worker's log lines: RFC 3339 UTC times and structured fields as keys (JSON) or key=value."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from worker.logs import configure_logging

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Stderr:
    """What configure_logging's handler wrote to stderr (pytest's capsys stands in for it)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def getvalue(self) -> str:
        return self._capsys.readouterr().err


@pytest.fixture
def captured(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    """stderr as configure_logging's handler sees it; the root logger restored after."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        yield Stderr(capsys)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_json_lines_carry_utc_time_and_the_structured_fields_as_keys(captured: Stderr) -> None:
    configure_logging("INFO", json_lines=True)
    before = datetime.now(UTC)
    logging.getLogger("worker.stream.runner").warning(
        "batch failed", extra={"topic": "docs", "partition": 3, "offset": 1207, "batch_size": 64, "error": "timeout"}
    )
    entry = orjson.loads(captured.getvalue().splitlines()[-1])
    assert RFC3339_UTC.match(entry["time"]), entry["time"]
    logged_at = datetime.fromisoformat(entry["time"])
    assert logged_at.utcoffset() is not None and logged_at.utcoffset().total_seconds() == 0
    assert abs((logged_at - before).total_seconds()) < 5
    assert {k: entry[k] for k in ("level", "logger", "message")} == {
        "level": "WARNING", "logger": "worker.stream.runner", "message": "batch failed",
    }
    assert {k: entry[k] for k in ("topic", "partition", "offset", "batch_size", "error")} == {
        "topic": "docs", "partition": 3, "offset": 1207, "batch_size": 64, "error": "timeout",
    }
    assert next(iter(entry)) == "time"


def test_json_lines_keep_the_traceback_under_exception(captured: Stderr) -> None:
    configure_logging("INFO", json_lines=True)
    try:
        raise RuntimeError("engine gone")
    except RuntimeError:
        logging.getLogger("worker").exception("engine failed", extra={"batch_size": 2})
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1, "one JSON object, one line"
    entry = orjson.loads(lines[0])
    assert "RuntimeError: engine gone" in entry["exception"] and "Traceback" in entry["exception"]
    assert entry["batch_size"] == 2


def test_a_message_with_arguments_is_formatted_and_a_record_without_extras_has_none(captured: Stderr) -> None:
    configure_logging("INFO", json_lines=True)
    logging.getLogger("worker").info("assigned %d partitions", 4)
    entry = orjson.loads(captured.getvalue())
    assert entry["message"] == "assigned 4 partitions"
    assert set(entry) == {"time", "level", "logger", "message"}


def test_plain_lines_carry_utc_time_and_key_values(captured: Stderr) -> None:
    configure_logging("INFO")
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("worker.stream").error("commit failed", exc_info=True, extra={"partition": 1, "offset": 9})
    first, *rest = captured.getvalue().splitlines()
    time, level, rest_of_line = first.split(" ", 2)
    assert RFC3339_UTC.match(time), time
    assert level == "ERROR"
    assert rest_of_line == "worker.stream: commit failed partition=1 offset=9"
    assert rest[-1] == "ValueError: bad"


def test_debug_records_are_dropped_at_info(captured: Stderr) -> None:
    configure_logging("INFO", json_lines=True)
    logging.getLogger("worker").debug("noise", extra={"topic": "t"})
    assert captured.getvalue() == ""
