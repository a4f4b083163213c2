"""The Helm chart rendered like `helm template`, every object checked against the Kubernetes 1.37 schemas."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from detector_operator.manifests import StateVolume
from detector_operator.settings import OperatorSettings
from tests.chart.conftest import CHART, NAMESPACE, RELEASE, ROOT, Render, Rendered, RenderError

K8S = "1.37.0"
GPU_VALUES = Path(__file__).parent / "values-gpu.yaml"
FULLNAME = f"{RELEASE}-detector"
OPERATOR = f"{FULLNAME}-operator"
BROKER = f"{FULLNAME}-broker"
BROKER_URL = f"ws://{BROKER}.{NAMESPACE}.svc:8000"
OPERATOR_ENV = [
    "DETECTOR_NAMESPACE", "DETECTOR_CAMERA_IMAGE", "DETECTOR_CAMERA_IMAGE_PULL_POLICY", "DETECTOR_CAMERA_GPU",
    "DETECTOR_CAMERA_CPU_REQUEST", "DETECTOR_CAMERA_MEMORY_REQUEST", "DETECTOR_CAMERA_MEMORY_LIMIT",
    "DETECTOR_CAMERA_NODE_SELECTOR", "DETECTOR_CAMERA_TOLERATIONS", "DETECTOR_CAMERA_RUNTIME_CLASS",
    "DETECTOR_CAMERA_SERVICE_ACCOUNT", "DETECTOR_CAMERA_STATE_VOLUME", "DETECTOR_CAMERA_STATE_SIZE",
    "DETECTOR_CAMERA_STATE_STORAGE_CLASS", "DETECTOR_BROKER_URL", "DETECTOR_SERVICES_SECRET", "DETECTOR_AUTH_SECRET",
    "DETECTOR_STATUS_INTERVAL_SEC", "DETECTOR_MAX_CONCURRENT_ROLLS", "DETECTOR_PEERING",
    "DETECTOR_OPERATOR_HEALTH_PORT", "DETECTOR_LOG_FORMAT",
]
OPTIONAL_OPERATOR_ENV = {"DETECTOR_CAMERA_RUNTIME_CLASS", "DETECTOR_CAMERA_SERVICE_ACCOUNT", "DETECTOR_SERVICES_SECRET",
                         "DETECTOR_CAMERA_STATE_STORAGE_CLASS"}
STATE_VOLUMES: dict[str, Any] = {
    "emptyDir": {"camera": {"stateVolume": {"type": "emptyDir"}}},
    "hostPath": {"camera": {"stateVolume": {"type": "hostPath", "hostPath": "/srv/detector"}}},
}
BROKER_ENV = ["DETECTOR_RUNNER", "DETECTOR_NAMESPACE", "DETECTOR_BROKER_ID", "DETECTOR_PORT",
              "DETECTOR_HEARTBEAT_INTERVAL_SEC", "DETECTOR_MAX_STREAMS", "DETECTOR_EVENT_MODE", "DETECTOR_LOG_FORMAT",
              "DETECTOR_AUTH_TOKEN"]
AUTH_SECRET = f"{FULLNAME}-auth"
LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
          "app.kubernetes.io/managed-by", "app.kubernetes.io/component", "helm.sh/chart"]


@pytest.fixture(params=["default", "gpu"])
def rendered(request: pytest.FixtureRequest, render: Render) -> Rendered:
    return render(GPU_VALUES if request.param == "gpu" else None)


@pytest.fixture
def gpu(render: Render) -> Rendered:
    return render(GPU_VALUES)


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in _container(deployment)["env"]}


def _rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_chart_crd_is_a_byte_identical_copy_of_the_repository_crd() -> None:
    chart_crd = CHART / "crds" / "camerasubscriptions.yaml"
    assert not chart_crd.is_symlink(), "Helm packages symlinks poorly: keep a real copy"
    assert chart_crd.read_bytes() == (ROOT / "crds" / "camerasubscriptions.yaml").read_bytes(), \
        "charts/detector/crds/ drifted: cp crds/camerasubscriptions.yaml charts/detector/crds/"


def test_the_kopf_peering_crd_is_valid_and_namespaced() -> None:
    crd = yaml.safe_load((CHART / "crds" / "kopfpeerings.yaml").read_text())
    kubernetes_validate.validate(crd, K8S, strict=True)
    assert crd["metadata"]["name"] == "kopfpeerings.kopf.dev"
    assert (crd["spec"]["group"], crd["spec"]["scope"], crd["spec"]["names"]["kind"]) == \
        ("kopf.dev", "Namespaced", "KopfPeering")
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1" and version["served"] and version["storage"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_every_rendered_object_is_valid_kubernetes(render: Render) -> None:
    for values in (None, GPU_VALUES, *STATE_VOLUMES.values()):
        for doc in render(values, include_crds=True).documents:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
            if doc["apiVersion"].startswith("kopf.dev/"):
                continue  # kubernetes_validate has no schema for Kopf's own resources
            kubernetes_validate.validate(doc, K8S, strict=True)


def test_the_chart_renders_exactly_these_objects(render: Render) -> None:
    expected = {("ServiceAccount", OPERATOR), ("ServiceAccount", BROKER), ("Role", OPERATOR), ("Role", BROKER),
                ("RoleBinding", OPERATOR), ("RoleBinding", BROKER),
                ("KopfPeering", "detector"), ("Deployment", OPERATOR), ("Deployment", BROKER), ("Service", BROKER),
                ("Secret", AUTH_SECRET)}
    default = render()
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in default.documents} == expected
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in render(GPU_VALUES).documents} == \
        expected - {("Secret", AUTH_SECRET)} | {("Ingress", BROKER)}, "auth.existingSecret: no Secret of ours"
    without_peering = render({"operator": {"peering": {"create": False}}})
    assert without_peering.of_kind("KopfPeering") == []
    assert {doc["metadata"].get("namespace") for doc in default.documents} == {NAMESPACE}, "nothing cluster-wide"


def test_every_object_carries_the_standard_labels(rendered: Rendered) -> None:
    for doc in rendered.documents:
        labels = doc["metadata"]["labels"]
        assert [name for name in LABELS if name not in labels] == [], doc["metadata"]["name"]
        assert labels["app.kubernetes.io/component"] in {"operator", "broker"}
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "detector-0.1.0"
    for deployment in rendered.of_kind("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert "app.kubernetes.io/version" not in selector, "selectors are immutable: no version in them"
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    service_selector = rendered.one("Service", BROKER)["spec"]["selector"]
    assert service_selector == rendered.one("Deployment", BROKER)["spec"]["selector"]["matchLabels"]


def test_the_operator_has_least_privilege(rendered: Rendered) -> None:
    rules = _rules(rendered.one("Role", OPERATOR))
    assert not {rule for rule in rules if rule[1] == "secrets"}, "the operator never reads Secrets"
    assert rules == (
        {("detector.gasstation.dev", "camerasubscriptions", verb) for verb in ("get", "list", "watch", "patch")}
        | {("detector.gasstation.dev", "camerasubscriptions/status", verb) for verb in ("get", "patch")}
        | {("", "pods", verb) for verb in ("get", "list", "watch", "create", "delete")}
        | {("", "persistentvolumeclaims", "create")}
        | {(group, "events", verb) for group in ("", "events.k8s.io") for verb in ("create", "patch")}
        | {("kopf.dev", "kopfpeerings", verb) for verb in ("get", "list", "watch", "patch")})
    assert rendered.of_kind("ClusterRole") == [], "Kopf's cluster scanning is off: no cluster-wide access"
    binding = rendered.one("RoleBinding", OPERATOR)
    assert binding["roleRef"]["name"] == OPERATOR and binding["subjects"][0]["name"] == OPERATOR


def test_the_broker_has_least_privilege(rendered: Rendered) -> None:
    rules = _rules(rendered.one("Role", BROKER))
    assert not {rule for rule in rules if rule[1] == "pods"}, "the broker reaches pods only through the CRD"
    assert rules == (
        {("detector.gasstation.dev", "camerasubscriptions", verb)
         for verb in ("get", "list", "watch", "create", "patch", "delete")}
        | {("detector.gasstation.dev", "camerasubscriptions/status", "get")}
        | {("", "secrets", verb) for verb in ("get", "list", "create", "patch", "delete")})
    binding = rendered.one("RoleBinding", BROKER)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": BROKER}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": BROKER, "namespace": NAMESPACE}]
    for role in rendered.of_kind("Role"):
        assert not {rule for rule in _rules(role) if "*" in rule}, "no wildcards"


def test_the_operator_environment_with_default_values(render: Render) -> None:
    deployment = render().one("Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert _env(deployment) == {
        "DETECTOR_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "DETECTOR_CAMERA_IMAGE": "ghcr.io/example/camera-detector:0.1.0",
        "DETECTOR_CAMERA_IMAGE_PULL_POLICY": "IfNotPresent",
        "DETECTOR_CAMERA_GPU": "1",
        "DETECTOR_CAMERA_CPU_REQUEST": "500m",
        "DETECTOR_CAMERA_MEMORY_REQUEST": "1Gi",
        "DETECTOR_CAMERA_MEMORY_LIMIT": "4Gi",
        "DETECTOR_CAMERA_NODE_SELECTOR": "{}",
        "DETECTOR_CAMERA_TOLERATIONS": "[]",
        "DETECTOR_CAMERA_STATE_VOLUME": "persistentVolumeClaim",
        "DETECTOR_CAMERA_STATE_SIZE": "1Gi",
        "DETECTOR_BROKER_URL": BROKER_URL,
        "DETECTOR_AUTH_SECRET": AUTH_SECRET,
        "DETECTOR_STATUS_INTERVAL_SEC": "10",
        "DETECTOR_MAX_CONCURRENT_ROLLS": "4",
        "DETECTOR_PEERING": "detector",
        "DETECTOR_OPERATOR_HEALTH_PORT": "8080",
        "DETECTOR_LOG_FORMAT": "json",
    }
    assert [name for name in OPERATOR_ENV if name not in OPTIONAL_OPERATOR_ENV] == list(_env(deployment))
    assert _container(deployment)["image"] == "ghcr.io/example/camera-detector-operator:0.1.0"


def test_the_operator_environment_on_a_gpu_cluster(gpu: Rendered) -> None:
    deployment = gpu.one("Deployment", OPERATOR)
    env = _env(deployment)
    assert list(env) == [*OPERATOR_ENV, "DETECTOR_LOG_LEVEL"], "chart names in order, then operator.extraEnv"
    assert env["DETECTOR_CAMERA_GPU"] == "2"
    assert env["DETECTOR_CAMERA_IMAGE"] == "registry.example.com/camera-detector:1.10", "tags stay strings"
    assert env["DETECTOR_CAMERA_IMAGE_PULL_POLICY"] == "Always"
    assert env["DETECTOR_CAMERA_MEMORY_LIMIT"] == "8Gi"
    assert yaml.safe_load(env["DETECTOR_CAMERA_NODE_SELECTOR"]) == {"nvidia.com/gpu.present": "true"}
    assert yaml.safe_load(env["DETECTOR_CAMERA_TOLERATIONS"]) == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert env["DETECTOR_CAMERA_RUNTIME_CLASS"] == "nvidia"
    assert env["DETECTOR_CAMERA_SERVICE_ACCOUNT"] == "camera-pods"
    assert env["DETECTOR_SERVICES_SECRET"] == "detector-services"
    assert (env["DETECTOR_CAMERA_STATE_SIZE"], env["DETECTOR_CAMERA_STATE_STORAGE_CLASS"]) == ("2Gi", "fast-ssd")
    assert env["DETECTOR_AUTH_SECRET"] == "detector-auth"
    assert env["DETECTOR_STATUS_INTERVAL_SEC"] == "5"
    assert deployment["spec"]["replicas"] == 2
    assert _container(deployment)["image"] == "registry.example.com/camera-detector-operator:1.10"


@pytest.mark.parametrize(("mode", "env", "expected"), [
    ("default", {"DETECTOR_CAMERA_STATE_VOLUME": "persistentVolumeClaim", "DETECTOR_CAMERA_STATE_SIZE": "1Gi"},
     StateVolume(type="persistentVolumeClaim", size="1Gi")),
    ("gpu", {"DETECTOR_CAMERA_STATE_VOLUME": "persistentVolumeClaim", "DETECTOR_CAMERA_STATE_SIZE": "2Gi",
             "DETECTOR_CAMERA_STATE_STORAGE_CLASS": "fast-ssd"},
     StateVolume(type="persistentVolumeClaim", storage_class="fast-ssd", size="2Gi")),
    ("emptyDir", {"DETECTOR_CAMERA_STATE_VOLUME": "emptyDir"}, StateVolume(type="emptyDir")),
    ("hostPath", {"DETECTOR_CAMERA_STATE_VOLUME": "hostPath", "DETECTOR_CAMERA_STATE_HOST_PATH": "/srv/detector"},
     StateVolume(type="hostPath", host_path="/srv/detector")),
])
def test_the_state_volume_reaches_the_operator_and_only_claims_get_rbac(
        render: Render, monkeypatch: pytest.MonkeyPatch, mode: str, env: dict[str, str],
        expected: StateVolume) -> None:
    rendered = render(GPU_VALUES if mode == "gpu" else STATE_VOLUMES.get(mode))
    operator_env = _env(rendered.one("Deployment", OPERATOR))
    assert {name: value for name, value in operator_env.items() if "_STATE_" in name} == env
    for name, value in operator_env.items():
        if isinstance(value, str):
            monkeypatch.setenv(name, value)
    assert OperatorSettings().pod_defaults().state_volume == expected, "the operator reads what the chart sets"
    claims = {rule for rule in _rules(rendered.one("Role", OPERATOR)) if rule[1] == "persistentvolumeclaims"}
    assert claims == ({("", "persistentvolumeclaims", "create")} if expected.type == "persistentVolumeClaim"
                      else set()), "claims only where the operator creates them, and only create"


def test_the_operator_liveness_probe_is_kopfs(rendered: Rendered) -> None:
    container = _container(rendered.one("Deployment", OPERATOR))
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8080}]
    assert "command" not in container and "args" not in container, "the image's entrypoint runs the operator"


def test_the_broker_runs_alone_with_the_kubernetes_runner(rendered: Rendered) -> None:
    deployment = rendered.one("Deployment", BROKER)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _container(deployment)
    assert container["args"] == ["run", "--runner", "kubernetes"]
    assert container["image"] == _env(rendered.one("Deployment", OPERATOR))["DETECTOR_CAMERA_IMAGE"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = _env(deployment)
    assert list(env)[: len(BROKER_ENV)] == BROKER_ENV
    assert env["DETECTOR_RUNNER"] == "kubernetes" and env["DETECTOR_BROKER_ID"] == RELEASE
    assert env["DETECTOR_PORT"] == "8000" and env["DETECTOR_LOG_FORMAT"] == "json"


def test_the_broker_environment_on_a_gpu_cluster(gpu: Rendered) -> None:
    env = _env(gpu.one("Deployment", BROKER))
    assert list(env) == [*BROKER_ENV, "DETECTOR_TARGET_FPS"], "chart names, then broker.extraEnv"
    assert (env["DETECTOR_MAX_STREAMS"], env["DETECTOR_EVENT_MODE"], env["DETECTOR_TARGET_FPS"]) == ("64", "frame", "5")


def test_both_deployments_run_as_non_root_on_a_read_only_root(rendered: Rendered) -> None:
    for deployment in rendered.of_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = _container(deployment)["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        mounts = {mount["mountPath"] for mount in _container(deployment)["volumeMounts"]}
        assert "/tmp" in mounts, "a writable /tmp on the read-only root"
        assert pod["serviceAccountName"] == deployment["metadata"]["name"]


def test_the_service_and_the_ingress_reach_the_broker_on_port_8000(gpu: Rendered) -> None:
    service = gpu.one("Service", BROKER)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    ingress = gpu.one("Ingress", BROKER)
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "detector.example.com"
    assert {(path["path"], path["pathType"]) for path in rule["http"]["paths"]} == {
        ("/", "Exact"), ("/camera/", "Prefix"), ("/console", "Prefix")}
    assert all(path["backend"]["service"] == {"name": BROKER, "port": {"name": "http"}}
               for path in rule["http"]["paths"]), "the pods' /internal/pods/ endpoint is never exposed"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"


def test_the_notes_tell_how_to_see_the_cameras_and_reach_the_broker(render: Render) -> None:
    notes = render().notes
    assert f"kubectl get camerasubscriptions -n {NAMESPACE}" in notes
    assert "kubectl get camsub" in notes
    assert f"{BROKER_URL}/" in notes
    assert f"kubectl port-forward -n {NAMESPACE} svc/{BROKER}" in notes
    assert "1 nvidia.com/gpu" in notes
    gpu_notes = render(GPU_VALUES).notes
    assert "2 nvidia.com/gpu" in gpu_notes and "wss://detector.example.com/" in gpu_notes
    assert "CPU only" in render({"camera": {"gpu": 0}}).notes


def test_auth_is_on_by_default_with_a_generated_token(render: Render) -> None:
    rendered = render()
    secret = rendered.one("Secret", AUTH_SECRET)
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 32 and token.isalnum()
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "broker"
    assert _env(rendered.one("Deployment", BROKER))["DETECTOR_AUTH_TOKEN"] == {
        "secretKeyRef": {"name": AUTH_SECRET, "key": "token"}}
    assert _env(rendered.one("Deployment", OPERATOR))["DETECTOR_AUTH_SECRET"] == AUTH_SECRET
    again = base64.b64decode(render().one("Secret", AUTH_SECRET)["data"]["token"]).decode()
    assert again != token, "a fresh install draws a fresh token (an upgrade keeps the cluster's, via lookup)"
    assert f"kubectl get secret -n {NAMESPACE} {AUTH_SECRET} -o jsonpath='{{.data.token}}' | base64 -d" in \
        rendered.notes
    assert "Authorization: Bearer" in rendered.notes


def test_an_existing_secret_replaces_the_generated_one(gpu: Rendered) -> None:
    assert gpu.of_kind("Secret") == []
    assert _env(gpu.one("Deployment", BROKER))["DETECTOR_AUTH_TOKEN"] == {
        "secretKeyRef": {"name": "detector-auth", "key": "token"}}
    assert "kubectl get secret -n detectors detector-auth" in gpu.notes


def test_auth_can_be_turned_off(render: Render) -> None:
    rendered = render({"auth": {"enabled": False}})
    assert rendered.of_kind("Secret") == []
    assert "DETECTOR_AUTH_TOKEN" not in _env(rendered.one("Deployment", BROKER))
    assert "DETECTOR_AUTH_SECRET" not in _env(rendered.one("Deployment", OPERATOR))
    assert "anyone who reaches the broker can drive it" in rendered.notes


@pytest.mark.parametrize(("values", "message"), [
    ({"camera": {"image": {"repository": ""}}}, "camera.image.repository is required"),
    ({"operator": {"image": {"repository": ""}}}, "operator.image.repository is required"),
    ({"broker": {"ingress": {"enabled": True}}}, "broker.ingress.host is required"),
])
def test_a_missing_required_value_fails_the_render_clearly(render: Render, values: dict[str, Any],
                                                           message: str) -> None:
    with pytest.raises(RenderError) as caught:
        render(values)
    assert message in str(caught.value)
