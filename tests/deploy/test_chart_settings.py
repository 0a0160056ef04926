"""Every worker setting is reachable from the chart's values, and every value reaches the worker.

The list of settings comes from the worker's code (``worker.settings``), not from the chart, so a
new setting without a chart value fails here. The rendered environment is fed to the worker's own
``load_settings``: what the chart writes is what the worker reads.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import Field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from tests.deploy.toolbox import (
    CHART,
    CLUSTER_BOOTSTRAP,
    REPO_ROOT,
    helm_template,
    only,
    render,
    run,
    tool,
    worker_container,
)
from worker.settings import Secret, Settings, load_settings, setting_fields

pytestmark = pytest.mark.deploy

SECRETS_DIR = "/var/run/secrets/kafka-ner-worker"
# Settings the worker accepts only with NER_ENGINE=hf (the other engines load the model elsewhere).
HF_ENGINE_ONLY = ("model_revision",)
# Settings that an Avro output refuses (its registered schema fixes the shape and field name).
JSON_OUTPUT_ONLY = ("output_shape", "entities_field")


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.capitalize() for part in rest)


def plain_fields() -> list[Field[Any]]:
    return [f for f in setting_fields() if not f.metadata.get("secret")]


def secret_fields() -> list[Field[Any]]:
    return [f for f in setting_fields() if f.metadata.get("secret")]


def environment(manifests: list[dict[str, Any]]) -> dict[str, str]:
    """The NER_* environment the worker container gets: its ConfigMap (envFrom) plus env."""
    container = worker_container(manifests)
    config_maps = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for var in container.get("env", []):
        env[var["name"]] = var["value"]
    return {k: v for k, v in env.items() if k.startswith("NER_")}


def non_default_value(f: Field[Any], files: dict[str, Path]) -> tuple[Any, Any]:
    """(value for values.yaml, the typed value the worker should end up with), not the default."""
    hint = typing.get_type_hints(Settings)[f.name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    default = f.default
    if f.name == "input_format":
        return "avro", "avro"  # NER_OUTPUT_FORMAT=avro (its first other choice) needs an avro input
    if f.name == "schema_registry_url":
        return "http://registry-from-values:8081", "http://registry-from-values:8081"
    if typing.get_origin(hint) is Literal:
        choice = next(c for c in typing.get_args(hint) if c != default)
        return choice, choice
    if hint is bool:
        return (not default), (not default)
    if hint is int:
        low, high = f.metadata.get("min", 0), f.metadata.get("max", 10**9)
        value = 18081 if f.name == "http_port" else min(max(default * 2 + 7, low + 7), high)
        if f.name == "max_length":
            value = 512
        return value, value
    if hint is float:
        high = f.metadata.get("max", 10**9)
        value = min(default + 1.5, high) if default + 1.5 <= high else (default + high) / 2
        return value, value
    if hint is Path:
        return str(files[f.name]), files[f.name]
    if f.name == "label_rename":
        return ["PER=person", "ORG=organization"], ("PER=person", "ORG=organization")
    if typing.get_origin(hint) is tuple:
        return ["LOC", "MISC"], ("LOC", "MISC")
    value = f"{f.name.replace('_', '-')}-from-values"
    return value, value


def test_schema_config_keys_are_exactly_the_worker_settings() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    wanted = {camel(f.name) for f in plain_fields()}
    assert set(schema["properties"]["config"]["properties"]) == wanted
    assert set(values["config"]) == wanted
    assert schema["properties"]["config"]["additionalProperties"] is False
    wanted_secrets = {camel(f.name) for f in secret_fields()}
    assert wanted_secrets <= set(schema["properties"]["secrets"]["properties"])


def test_chart_defaults_are_the_worker_defaults() -> None:
    """The default render gives the worker exactly its own defaults."""
    env = environment(render())
    assert load_settings(env) == Settings(kafka_bootstrap_servers=CLUSTER_BOOTSTRAP)


def test_an_install_without_bootstrap_servers_fails_naming_the_value() -> None:
    proc = helm_template(with_cluster_values=False)
    assert proc.returncode != 0, "rendered without config.kafkaBootstrapServers"
    assert "config.kafkaBootstrapServers: required with mode run" in proc.stderr, proc.stderr


def test_serve_needs_no_kafka_and_runs_the_front_end(tmp_path: Path) -> None:
    manifests = render(values={"mode": "serve"}, tmp_path=tmp_path, with_cluster_values=False)
    container = worker_container(manifests)
    assert container["args"] == ["serve"]
    assert "NER_KAFKA_BOOTSTRAP_SERVERS" not in environment(manifests)
    service = only(manifests, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"] == "http"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_hugging_face_token_is_a_mounted_file_the_hub_library_reads(tmp_path: Path) -> None:
    manifests = render(values={"secrets": {"hfToken": {"secretName": "hf", "key": "tok"}}}, tmp_path=tmp_path)
    container = worker_container(manifests)
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    env = {v["name"]: v["value"] for v in container["env"]}
    mount = next(m for m in container["volumeMounts"] if env["HF_TOKEN_PATH"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "hf"
    assert [mount["mountPath"] + "/" + i["path"] for i in volume["secret"]["items"] if i["key"] == "tok"] == [
        env["HF_TOKEN_PATH"]
    ]
    assert mount["readOnly"] is True
    # The variable is the one huggingface_hub reads the token file from.
    probe = run([sys.executable, "-c", "from huggingface_hub import constants; print(constants.HF_TOKEN_PATH)"],
                env_overrides={"HF_TOKEN_PATH": env["HF_TOKEN_PATH"]})
    assert probe.stdout.strip() == env["HF_TOKEN_PATH"], probe.stderr
    assert "HF_TOKEN_PATH" not in only(manifests, "ConfigMap", "-config")["data"]


def test_the_chart_creates_the_model_cache_claim_and_mounts_it(tmp_path: Path) -> None:
    manifests = render(
        values={"modelCache": {"persistence": {"enabled": True, "size": "7Gi", "storageClassName": "fast"}}},
        tmp_path=tmp_path,
    )
    claim = only(manifests, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "7Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache == {
        "name": "model-cache",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"], "readOnly": False},
    }
    without = render(values={}, tmp_path=tmp_path)
    assert not [m for m in without if m["kind"] == "PersistentVolumeClaim"]


def test_every_setting_value_reaches_the_worker(tmp_path: Path) -> None:
    files = {name: tmp_path / f"{name}.pem" for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile",
                                                         "schema_registry_ssl_cafile", "schema_registry_ssl_certfile",
                                                         "schema_registry_ssl_keyfile")}
    for path in files.values():
        path.write_text("not read here\n", encoding="utf-8")
    config, expected = {}, {}
    for f in plain_fields():
        if f.name in HF_ENGINE_ONLY:
            continue  # the engine is not hf here: checked below with the hf engine
        if f.name in JSON_OUTPUT_ONLY:
            continue  # the output is avro here: checked below with JSON output
        config[camel(f.name)], expected[f.name] = non_default_value(f, files)
        assert expected[f.name] != f.default, f.name
    manifests = render(values={"config": config}, tmp_path=tmp_path)
    env = environment(manifests)
    settings = load_settings(env)
    wrong = {
        name: (getattr(settings, name), want) for name, want in expected.items() if getattr(settings, name) != want
    }
    assert not wrong, f"settings that did not arrive as set: {wrong}"
    container = worker_container(manifests)
    assert container["ports"][0]["containerPort"] == 18081
    hf_only = {camel(name): f"{name}-from-values" for name in HF_ENGINE_ONLY}
    settings = load_settings(environment(render(values={"config": hf_only}, tmp_path=tmp_path)))
    assert {name: getattr(settings, name) for name in HF_ENGINE_ONLY} == {n: f"{n}-from-values" for n in HF_ENGINE_ONLY}
    json_only = {"outputShape": "entities", "entitiesField": "entities-field-from-values"}
    settings = load_settings(environment(render(values={"config": json_only}, tmp_path=tmp_path)))
    assert (settings.output_shape, settings.entities_field) == ("entities", "entities-field-from-values")


def test_secrets_reach_the_worker_as_mounted_files(tmp_path: Path) -> None:
    values = {
        "config": {"securityProtocol": "SASL_SSL", "saslUsername": "ner"},
        "secrets": {
            "saslPassword": {"secretName": "kafka-user", "key": "pw"},
            "tls": {"secretName": "kafka-tls", "caKey": "ca.pem", "certKey": "client.pem", "keyKey": "client.key"},
            "sslKeyPassword": {"secretName": "kafka-tls", "key": "client.password"},
            "schemaRegistryPassword": {"secretName": "registry-user", "key": "registry.pw"},
        },
    }
    manifests = render(values=values, tmp_path=tmp_path)
    env = environment(manifests)
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container = worker_container(manifests)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    expected_files = {
        "NER_SASL_PASSWORD_FILE": ("kafka-user", "pw"),
        "NER_SSL_KEY_PASSWORD_FILE": ("kafka-tls", "client.password"),
        "NER_SSL_CAFILE": ("kafka-tls", "ca.pem"),
        "NER_SSL_CERTFILE": ("kafka-tls", "client.pem"),
        "NER_SSL_KEYFILE": ("kafka-tls", "client.key"),
        "NER_SCHEMA_REGISTRY_PASSWORD_FILE": ("registry-user", "registry.pw"),
    }
    for var, (secret, key) in expected_files.items():
        path = env[var]
        assert path.startswith(SECRETS_DIR + "/"), var
        volume = next(name for name, mount in mounts.items() if path.startswith(mount + "/"))
        source = volumes[volume]["secret"]
        item = next(i for i in source["items"] if i["key"] == key)
        assert (source["secretName"], mounts[volume] + "/" + item["path"]) == (secret, path), var
    # Every secret setting of the worker is covered, and no secret value is in the ConfigMap.
    for f in secret_fields():
        assert f"NER_{f.name.upper()}_FILE" in env
        assert f"NER_{f.name.upper()}" not in env
    # The worker reads the very paths the chart mounted.
    local = {var: tmp_path / var.lower() for var in expected_files}
    for var, path in local.items():
        path.write_text(f"{var}-content\n", encoding="utf-8")
    settings = load_settings({**env, **{var: str(path) for var, path in local.items()}})
    assert settings.sasl_password == Secret("NER_SASL_PASSWORD_FILE-content")
    assert settings.ssl_key_password == Secret("NER_SSL_KEY_PASSWORD_FILE-content")
    assert settings.schema_registry_password == Secret("NER_SCHEMA_REGISTRY_PASSWORD_FILE-content")


def test_chart_files_are_in_step_with_the_worker() -> None:
    """values.yaml, the schema, the README table and the compose alerts are generated: up to date?"""
    proc = run([sys.executable, REPO_ROOT / "tools" / "sync_deploy_files.py", "--check", "--helm", tool("helm")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


BAD_VALUES = [
    ({"config": {"maxBatchDocuments": 0}}, "/config/maxBatchDocuments"),
    ({"config": {"engine": "tensorrt"}}, "/config/engine"),
    ({"config": {"maxBachDocuments": 8}}, "maxBachDocuments"),
    ({"config": {"httpPort": 0}}, "/config/httpPort"),
    ({"config": {"vllmGpuMemoryUtilization": 1.5}}, "/config/vllmGpuMemoryUtilization"),
    ({"config": {"drainTimeoutS": "20s"}}, "/config/drainTimeoutS"),
    ({"config": {"securityProtocol": "SASL_SSL"}}, "/config/saslUsername"),
    (
        {"config": {"securityProtocol": "SASL_SSL", "saslUsername": "ner"}},
        "/secrets/saslPassword/secretName",
    ),
    ({"config": {"engine": "remote"}}, "/config/remoteUrl"),
    ({"config": {"labels": ["PER", "B-MISC"]}}, "/config/labels/1"),
    ({"config": {"labelRename": ["PER"]}}, "/config/labelRename/0"),
    ({"config": {"minScore": 1.5}}, "/config/minScore"),
    ({"gpu": {"count": -1}}, "/gpu/count"),
    ({"mode": "stream"}, "/mode"),
    ({"modelCache": {"persistence": {"enabled": True, "accessModes": ["ReadWriteSometimes"]}}},
     "/modelCache/persistence/accessModes/0"),
    ({"metrics": {"serviceMonitor": {"enabled": True, "interval": "often"}}}, "/metrics/serviceMonitor/interval"),
]


@pytest.mark.parametrize(("values", "path"), BAD_VALUES, ids=[p for _, p in BAD_VALUES])
def test_bad_values_are_rejected_naming_the_value(values: dict[str, Any], path: str, tmp_path: Path) -> None:
    proc = helm_template(values=values, tmp_path=tmp_path)
    assert proc.returncode != 0, f"accepted: {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert path in proc.stderr, proc.stderr


TEMPLATE_CHECKS = [
    (
        {"config": {"sslCafile": "/etc/ca.pem"}, "secrets": {"tls": {"secretName": "kafka-tls"}}},
        "config.sslCafile: leave it empty when secrets.tls.secretName is set",
    ),
    ({"image": {"tag": "latest"}}, "image.tag: 'latest' is not allowed"),
    (
        {"extraEnv": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "NER_MAX_BATCH_DOCUMENTS", "value": "8"}]},
        "extraEnv[1].name: NER_MAX_BATCH_DOCUMENTS is a worker setting; set config.maxBatchDocuments instead",
    ),
    (
        {"gpu": {"products": ["NVIDIA-H100"]}, "affinity": {"nodeAffinity": {}}},
        "gpu.products: cannot be combined with affinity.nodeAffinity",
    ),
    (
        {"autoscaling": {"keda": {"enabled": True, "minReplicaCount": 5, "maxReplicaCount": 2}}},
        "autoscaling.keda.minReplicaCount: must not exceed",
    ),
    (
        {"autoscaling": {"hpa": {"enabled": True}}},
        "autoscaling.hpa.enabled: the HorizontalPodAutoscaler is for mode serve",
    ),
    (
        {"mode": "serve", "autoscaling": {"keda": {"enabled": True}}},
        "autoscaling.keda.enabled: KEDA scales the stream worker (mode run)",
    ),
    (
        {"mode": "serve", "autoscaling": {"hpa": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        "autoscaling.hpa.minReplicas: must not exceed",
    ),
    (
        {"config": {"drainTimeoutS": 60, "maxPollIntervalMs": 60000}},
        "config.drainTimeoutS: must be shorter than config.maxPollIntervalMs",
    ),
    (
        {"modelCache": {"existingClaim": "models", "persistence": {"enabled": True}}},
        "modelCache.persistence.enabled: the chart creates a claim or mounts modelCache.existingClaim, not both",
    ),
]


@pytest.mark.parametrize(("values", "message"), TEMPLATE_CHECKS, ids=[m.split(":")[0] for _, m in TEMPLATE_CHECKS])
def test_inconsistent_values_fail_with_a_clear_message(values: dict[str, Any], message: str, tmp_path: Path) -> None:
    proc = helm_template(values=values, tmp_path=tmp_path)
    assert proc.returncode != 0, f"accepted: {values}"
    assert message in proc.stderr, proc.stderr
