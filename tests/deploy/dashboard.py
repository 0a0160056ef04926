"""The Grafana dashboard's PromQL, with Grafana's variables replaced so Prometheus can run it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.deploy.toolbox import CHART

DASHBOARD = CHART / "files" / "dashboards" / "kafka-ner-worker.json"


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel."""
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", []) if "expr" in t]


def concrete(expr: str, job_regex: str, rate_interval: str) -> str:
    """What Grafana sends to Prometheus for one choice of the variables."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", job_regex)
