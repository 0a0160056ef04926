"""The Helm chart, checked by the real Helm and validated against Kubernetes' own schemas.

Built-in kinds are validated with kubernetes-validate (strict: unknown fields rejected) for the
oldest supported Kubernetes and the newest it knows; the Prometheus Operator and KEDA objects are
decoded strictly into those projects' own Go API types by tools/crdcheck.
"""

from __future__ import annotations

import copy
import math
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.toolbox import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    helm_template,
    only,
    render,
    run,
    tool,
    worker_container,
)

pytestmark = pytest.mark.deploy

CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}
KUBERNETES_VERSIONS = (KUBE_VERSION, kubernetes_validate.utils.latest_version())
CI_IDS = [p.name.removesuffix("-values.yaml") for p in CI_VALUES]


def test_there_are_at_least_five_value_sets() -> None:
    assert {"default", "gpu", "exactly-once-sasl-ssl", "keda", "all-features", "serve"} <= set(CI_IDS)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_helm_lint_strict(values_file: Path) -> None:
    proc = run([tool("helm"), "lint", "--strict", CHART, "--values", values_file, "--kube-version", KUBE_VERSION])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def validate_builtin(manifest: dict[str, Any]) -> list[str]:
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            where = "/".join(str(p) for p in err.path)
            problems.append(
                f"{manifest['kind']}/{manifest['metadata']['name']} at {where} (k8s {version}): {err.message}"
            )
    return problems


def validate_custom(manifests: list[dict[str, Any]]) -> str:
    """crdcheck's complaints about the custom resources; empty when all decode strictly."""
    done = subprocess.run(
        [str(tool("crdcheck"))], input=yaml.safe_dump_all(manifests), capture_output=True, text=True, timeout=60
    )
    return done.stdout + done.stderr if done.returncode else ""


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_rendered_manifests_are_valid_kubernetes(values_file: Path) -> None:
    manifests = render(values_files=[values_file])
    builtin = [m for m in manifests if (m["apiVersion"], m["kind"]) not in CUSTOM_KINDS]
    custom = [m for m in manifests if (m["apiVersion"], m["kind"]) in CUSTOM_KINDS]
    problems = [p for m in builtin for p in validate_builtin(m)]
    assert not problems, "\n".join(problems)
    if custom:
        assert validate_custom(custom) == ""


def test_the_validators_reject_unknown_fields() -> None:
    """A control: the same validation fails a manifest with a misspelt field."""
    manifests = render(values_files=[CHART / "ci" / "all-features-values.yaml"])
    deployment = copy.deepcopy(only(manifests, "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 30
    assert any("terminationGracePeriodSecond" in p for p in validate_builtin(deployment))
    deployment = copy.deepcopy(only(manifests, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    assert any("readinesProbe" in p for p in validate_builtin(deployment))
    monitor = copy.deepcopy(only(manifests, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert "intervall" in validate_custom([monitor])
    scaled = copy.deepcopy(only(manifests, "ScaledObject"))
    scaled["spec"]["maxReplicas"] = 3
    assert "maxReplicas" in validate_custom([scaled])


def test_every_value_set_covers_the_expected_objects() -> None:
    kinds = {p: {m["kind"] for m in render(values_files=[p])} for p in CI_VALUES}
    base = {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
    assert kinds[CHART / "ci" / "default-values.yaml"] == base
    assert kinds[CHART / "ci" / "keda-values.yaml"] == base | {"ScaledObject"}
    assert kinds[CHART / "ci" / "serve-values.yaml"] == base | {"HorizontalPodAutoscaler", "PersistentVolumeClaim"}
    assert kinds[CHART / "ci" / "all-features-values.yaml"] == base | {
        "ScaledObject",
        "TriggerAuthentication",
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
    }


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_pods_meet_the_restricted_pod_security_standard(values_file: Path) -> None:
    manifests = render(values_files=[values_file])
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container = worker_container(manifests)
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/cache"} <= mounts, "a read-only root needs writable /tmp and cache volumes"
    assert ":latest" not in container["image"] and container["image"].count(":") >= 1


@pytest.mark.parametrize("values_file", CI_VALUES, ids=CI_IDS)
def test_probes_and_grace_period_follow_the_worker(values_file: Path) -> None:
    manifests = render(values_files=[values_file])
    config = only(manifests, "ConfigMap", "-config")["data"]
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container = worker_container(manifests)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["ports"][0]["containerPort"] == int(config["NER_HTTP_PORT"])
    assert pod["terminationGracePeriodSeconds"] > math.ceil(float(config["NER_DRAIN_TIMEOUT_S"]))


def test_grace_period_is_derived_from_the_drain_timeout(tmp_path: Path) -> None:
    manifests = render(
        values={"config": {"drainTimeoutS": 92.5}, "terminationGracePeriodExtraSeconds": 5}, tmp_path=tmp_path
    )
    assert only(manifests, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 98


def test_gpu_values_request_a_gpu_and_pin_the_node() -> None:
    manifests = render(values_files=[CHART / "ci" / "gpu-values.yaml"])
    pod = only(manifests, "Deployment")["spec"]["template"]["spec"]
    container = worker_container(manifests)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith(":0.1.0-gpu")
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0] == {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-H100-80GB-HBM3"],
    }
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "gpu-h100"}
    assert pod["runtimeClassName"] == "nvidia"
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["persistentVolumeClaim"]["claimName"] == "ner-models"


def test_default_values_use_the_cpu_image_and_no_gpu() -> None:
    manifests = render(values_files=[CHART / "ci" / "default-values.yaml"])
    container = worker_container(manifests)
    assert container["image"] == "kafka-ner-worker:0.1.0-cpu"
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_keda_scales_the_deployment_on_the_workers_consumer_group() -> None:
    manifests = render(values_files=[CHART / "ci" / "keda-values.yaml"])
    scaled = only(manifests, "ScaledObject")
    deployment = only(manifests, "Deployment")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "ner-documents"
    assert trigger["metadata"]["topic"] == "documents"
    assert trigger["metadata"]["bootstrapServers"] == "kafka-bootstrap.kafka.svc:9092"
    assert trigger["metadata"]["lagThreshold"] == "5000"
    assert scaled["spec"]["maxReplicaCount"] == 12


@pytest.mark.parametrize(("processes", "partitions", "cap"), [
    (4, 24, 6),  # partitions / processes is below maxReplicaCount (12)
    (4, 64, 12),  # maxReplicaCount is the lower
    (1, 5, 5),  # one process a pod: pods against partitions
])
def test_keda_caps_the_replicas_at_partitions_over_stream_processes(tmp_path: Path, processes: int,
                                                                    partitions: int, cap: int) -> None:
    # Every stream process is a consumer-group member: replicas x processes beyond the partition
    # count only add idle members, and KEDA's own cap counts pods.
    values = {"config": {"processes": processes}, "autoscaling": {"keda": {"inputPartitions": partitions}}}
    manifests = render(values_files=[CHART / "ci" / "keda-values.yaml"], values=values, tmp_path=tmp_path)
    assert only(manifests, "ScaledObject")["spec"]["maxReplicaCount"] == cap
    assert cap * processes <= partitions


@pytest.mark.parametrize(("values", "message"), [
    ({"config": {"processes": 4}}, "autoscaling.keda.inputPartitions: required when a pod runs 4 stream processes"),
    ({"config": {"processes": 4}, "autoscaling": {"keda": {"inputPartitions": 3}}},
     "autoscaling.keda.inputPartitions: 3 partitions cannot give each of a pod's 4 stream processes"),
    # The worker derives the count from the node's cores on a GPU: the chart cannot know it.
    ({"config": {"engine": "vllm"}, "autoscaling": {"keda": {"inputPartitions": 64}}}, "config.processes: set it"),
    ({"config": {"processes": 4}, "autoscaling": {"keda": {"inputPartitions": 24, "minReplicaCount": 7}}},
     "autoscaling.keda.minReplicaCount: must not exceed the replica cap, 6"),
])
def test_keda_refuses_values_that_cannot_cap_the_replicas(tmp_path: Path, values: dict[str, Any],
                                                          message: str) -> None:
    proc = helm_template(values_files=[CHART / "ci" / "keda-values.yaml"], values=values, tmp_path=tmp_path)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr or proc.stdout[:500]


def test_serve_values_scale_the_front_end_on_cpu() -> None:
    manifests = render(values_files=[CHART / "ci" / "serve-values.yaml"])
    hpa = only(manifests, "HorizontalPodAutoscaler")
    deployment = only(manifests, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}
    }
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert worker_container(manifests)["args"] == ["serve"]
    claim = only(manifests, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "two replicas share the cache"


def test_keda_authenticates_like_the_worker() -> None:
    manifests = render(values_files=[CHART / "ci" / "all-features-values.yaml"])
    auth = only(manifests, "TriggerAuthentication")
    trigger = only(manifests, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["metadata"]["sasl"] == "scram_sha256" and trigger["metadata"]["tls"] == "enable"
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "password": ("ner-worker-kafka-user", "password"),
        "ca": ("ner-worker-kafka-tls", "ca.crt"),
        "cert": ("ner-worker-kafka-tls", "user.crt"),
        "key": ("ner-worker-kafka-tls", "user.key"),
        "keyPassword": ("ner-worker-kafka-tls", "user.password"),
    }
    assert auth["spec"]["env"] == [{"parameter": "username", "name": "NER_SASL_USERNAME", "containerName": "worker"}]


def test_service_monitor_scrapes_the_service_port() -> None:
    manifests = render(values_files=[CHART / "ci" / "all-features-values.yaml"])
    service = only(manifests, "Service")
    monitor = only(manifests, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pdb_and_network_policy_select_the_worker_pods() -> None:
    manifests = render(values_files=[CHART / "ci" / "all-features-values.yaml"])
    pod_labels = only(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = only(manifests, "PodDisruptionBudget")
    policy = only(manifests, "NetworkPolicy")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["minAvailable"] == 1
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    kafka_rule = policy["spec"]["egress"][1]
    assert kafka_rule["ports"] == [{"port": 9093, "protocol": "TCP"}]


def test_dashboard_config_map_carries_the_dashboard_for_the_sidecar() -> None:
    import json

    manifests = render(values_files=[CHART / "ci" / "all-features-values.yaml"])
    config_map = only(manifests, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "files" / "dashboards" / "kafka-ner-worker.json").read_text(encoding="utf-8"))
    assert json.loads(config_map["data"]["kafka-ner-worker.json"]) == shipped
