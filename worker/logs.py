"""Logging set-up: plain lines for people, or one JSON object per line for log pipelines.

Both carry the time in RFC 3339, UTC (``2026-11-29T12:55:51.123Z``), and the structured fields a
log call passes with ``extra={...}`` (``topic``, ``partition``, ``offset``, ``batch_size``,
``error`` ...): as keys of the JSON object, or as ``key=value`` after the message of a plain
line, so a pipeline can filter on them without parsing the message. The JSON encoding is
python-json-logger's (with orjson), not a formatter of our own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

# Attributes every LogRecord has (plus those the formatters add); whatever else a record
# carries came from extra={...}.
_STANDARD_ATTRIBUTES = frozenset([*RESERVED_ATTRS, "taskName"])


def rfc3339_utc(created: float) -> str:
    """A record's creation time as RFC 3339 in UTC, to the millisecond."""
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed with ``extra={...}``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES and not k.startswith("_")}


class JsonLinesFormatter(OrjsonFormatter):
    """``{"time", "level", "logger", "message", <extra fields>, "exception"}``, one object a line."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = rfc3339_utc(record.created)  # first, so lines read in time order
        super().add_fields(log_data, record, message_dict)


class PlainFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value ...``, the traceback on the lines after."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339_utc(record.created)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extra_fields(record)
        if not fields:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} {_key_values(fields)}{newline}{rest}"


def _key_values(fields: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in fields.items())


def configure_logging(level: str, *, json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every retry at WARNING/ERROR; keep it, but not its DEBUG chatter at INFO.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.INFO))
