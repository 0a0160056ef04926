"""The chart's alert rules, checked and unit-tested by the real promtool.

The rules are rendered from the chart exactly as a user gets them, then `promtool check rules`
and `promtool test rules` (helm/kafka-ner-worker/tests/alerts.test.yaml) run on them. Each alert
fires in a test case; a control shows that the unit tests notice a changed rule.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.toolbox import CHART, REPO_ROOT, only, render, run, tool

pytestmark = pytest.mark.deploy

UNIT_TESTS = CHART / "tests" / "alerts.test.yaml"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
REQUIRED_ALERTS = {
    "NerWorkerDown",
    "NerWorkerConsumerLagGrowing",
    "NerWorkerDeadLetterRate",
    "NerWorkerNoProgress",
    "NerWorkerEngineErrors",
}


def rendered_rules(tmp_path: Path, rules: dict[str, Any] | None = None) -> Path:
    """Renders the PrometheusRule and writes its groups as a Prometheus rule file, next to the unit tests."""
    prometheus_rule: dict[str, Any] = {"enabled": True}
    if rules:
        prometheus_rule["rules"] = rules
    manifests = render(values={"metrics": {"prometheusRule": prometheus_rule}}, tmp_path=tmp_path)
    groups = only(manifests, "PrometheusRule")["spec"]["groups"]
    workdir = tmp_path / "rules"
    workdir.mkdir(exist_ok=True)
    (workdir / "alerts.yml").write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    shutil.copy(UNIT_TESTS, workdir / UNIT_TESTS.name)
    return workdir


def alert_names(rule_file: Path) -> set[str]:
    groups = yaml.safe_load(rule_file.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    workdir = rendered_rules(tmp_path)
    proc = run([tool("promtool"), "check", "rules", workdir / "alerts.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert alert_names(workdir / "alerts.yml") >= REQUIRED_ALERTS


def test_promtool_unit_tests_fire_every_alert(tmp_path: Path) -> None:
    workdir = rendered_rules(tmp_path)
    proc = run([tool("promtool"), "test", "rules", UNIT_TESTS.name], cwd=workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    cases = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
    fired = {check["alertname"] for case in cases for check in case["alert_rule_test"] if check["exp_alerts"]}
    assert fired == alert_names(workdir / "alerts.yml"), "every alert needs a case where it fires"


@pytest.mark.parametrize(
    "changed",
    [
        {"deadLetterRatio": {"enabled": True, "threshold": 0.1, "window": "5m", "for": "10m", "severity": "warning"}},
        {"noProgress": {"enabled": True, "stalledSeconds": 3600, "for": "5m", "severity": "critical"}},
        {
            "consumerLagGrowing": {
                "enabled": True,
                "minLag": 10000,
                "window": "10m",
                "for": "10m",
                "severity": "warning",
            }
        },
        {"workersDown": {"enabled": True, "for": "30m", "severity": "critical"}},
    ],
    ids=["dead-letter-threshold", "stall-time", "lag-threshold", "workers-down-for"],
)
def test_unit_tests_notice_a_changed_rule(changed: dict[str, Any], tmp_path: Path) -> None:
    workdir = rendered_rules(tmp_path, changed)
    proc = run([tool("promtool"), "test", "rules", UNIT_TESTS.name], cwd=workdir)
    assert proc.returncode != 0, "the unit tests passed against a rule with another threshold"


def markdown_anchors(path: Path) -> set[str]:
    """The anchors GitHub and most Markdown renderers give the headings of a file."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_links_to_its_runbook_section(tmp_path: Path) -> None:
    workdir = rendered_rules(tmp_path)
    groups = yaml.safe_load((workdir / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    sections = markdown_anchors(RUNBOOK)
    for rule in (r for group in groups for r in group["rules"] if "alert" in r):
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == "docs/runbook.md", f"{rule['alert']}: {url!r}"
        assert anchor in sections, f"{rule['alert']}: no section #{anchor} in {RUNBOOK.name}"
    # A control: the anchor check knows a missing section when it sees one.
    assert "nerworkerteleported" not in sections


def test_runbook_links_follow_the_published_docs(tmp_path: Path) -> None:
    base = "https://docs.example.org/kafka-ner-worker/runbook.html"
    workdir = rendered_rules(tmp_path)
    manifests = render(
        values={"metrics": {"prometheusRule": {"enabled": True, "runbookBaseUrl": base}}}, tmp_path=tmp_path
    )
    rules = [r for g in only(manifests, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert {r["annotations"]["runbook_url"] for r in rules} == {
        f"{base}#{name.lower()}" for name in alert_names(workdir / "alerts.yml")
    }


def test_alert_thresholds_come_from_values(tmp_path: Path) -> None:
    workdir = rendered_rules(tmp_path, {"deadLetterRatio": {"threshold": 0.25}})
    text = (workdir / "alerts.yml").read_text(encoding="utf-8")
    assert "> 0.25" in text


def test_compose_prometheus_config_and_rules_are_valid() -> None:
    proc = run([tool("promtool"), "check", "config", REPO_ROOT / "docker" / "prometheus" / "prometheus.yml"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert alert_names(REPO_ROOT / "docker" / "prometheus" / "alerts.yml") >= REQUIRED_ALERTS
