"""The CRD and the manifests the operator builds, checked against the Kubernetes schemas offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from detector.contract.camerasubscription import CameraSubscriptionSpec, resource
from detector_operator.manifests import CACHE_MOUNT, STATE_MOUNT, PodDefaults, StateVolume, build_claim, build_pod

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "crds" / "camerasubscriptions.yaml").read_text())
K8S = "1.37.0"
UID = "0b7c9f6e-1111-4a2b-9c3d-5e6f7a8b9c0d"
SPEC: dict[str, Any] = {
    "camera": "cam-001",
    "stream": {"kind": "rtsp", "urlSecretRef": {"name": "cam-001-url", "key": "url"}},
    "subscriptions": [
        {"identifier": "display-001;cam-001", "modelUrl": "https://models.example/a.mpta", "modelId": 7,
         "modelName": "gas", "crop": {"x1": 0, "y1": 0, "x2": 320, "y2": 240}},
        {"identifier": "display-002;cam-001", "modelUrl": "https://models.example/a.mpta", "modelId": 7,
         "modelName": "gas"},
    ],
}


def _schema() -> dict[str, Any]:
    (version,) = CRD["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path or "(root)", schema)]
    for name, child in schema.get("properties", {}).items():
        found += _nodes(child, f"{path}.{name}")
    if "items" in schema:
        found += _nodes(schema["items"], f"{path}[]")
    return found


def test_crd_is_valid_and_complete() -> None:
    kubernetes_validate.validate(CRD, K8S, strict=True)
    versions = CRD["spec"]["versions"]
    assert [v["name"] for v in versions if v["storage"]] == ["v1"], "exactly one storage version"
    assert versions[0]["subresources"] == {"status": {}}
    untyped = [path for path, node in _nodes(_schema()) if "type" not in node]
    assert untyped == [], f"schema nodes without a type: {untyped}"
    columns = [column["name"] for column in versions[0]["additionalPrinterColumns"]]
    assert columns == ["Camera", "Model", "Subscribers", "Phase", "FPS", "Pod", "Last Frame", "Age"]


def test_a_resource_built_from_the_contract_matches_the_crd_schema() -> None:
    instance = resource("cam-001", "detectors", CameraSubscriptionSpec.model_validate(SPEC),
                        {"app.kubernetes.io/managed-by": "detector-broker"})
    jsonschema.validate(instance, _schema())


@pytest.mark.parametrize(("change", "where"), [
    ({"camera": "bad camera!"}, "camera"),
    ({"stream": {"kind": "ftp", "urlSecretRef": {"name": "s", "key": "k"}}}, "kind"),
    ({"subscriptions": []}, "subscriptions"),
    ({"subscriptions": [{**SPEC["subscriptions"][1], "identifier": "no-semicolon"}]}, "identifier"),
    ({"subscriptions": [{**SPEC["subscriptions"][1], "modelUrl": "file:///etc/passwd"}]}, "modelUrl"),
    ({"gpu": -1}, "gpu"),
])
def test_invalid_resources_are_refused_by_the_crd_schema(change: dict[str, Any], where: str) -> None:
    instance = {"apiVersion": "detector.gasstation.dev/v1", "kind": "CameraSubscription",
                "metadata": {"name": "x"}, "spec": {**SPEC, **change}}
    with pytest.raises(jsonschema.ValidationError) as caught:
        jsonschema.validate(instance, _schema())
    assert where in str(caught.value.path) or where in caught.value.message


@pytest.mark.parametrize("gpu", [None, 0, 2])
def test_camera_pod_manifest_is_valid(gpu: int | None) -> None:
    spec = CameraSubscriptionSpec.model_validate({**SPEC, "gpu": gpu} if gpu is not None else SPEC)
    defaults = PodDefaults(node_selector={"nvidia.com/gpu.present": "true"},
                           tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                           services_secret="detector-services")
    pod = build_pod("cam-001", "detectors", "0b7c9f6e-1111-4a2b-9c3d-5e6f7a8b9c0d", spec, defaults, revision="a1b2c3")
    kubernetes_validate.validate(pod, K8S, strict=True)
    container = pod["spec"]["containers"][0]
    expected_gpu = 1 if gpu is None else gpu
    assert container["resources"]["limits"].get("nvidia.com/gpu") == (str(expected_gpu) if expected_gpu else None)
    assert pod["metadata"]["ownerReferences"][0] | {"uid": ""} == {
        "apiVersion": "detector.gasstation.dev/v1", "kind": "CameraSubscription", "name": "cam-001", "uid": "",
        "controller": True, "blockOwnerDeletion": True}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    url_env = next(e for e in container["env"] if e["name"] == "DETECTOR_STREAM_URL")
    assert url_env["valueFrom"]["secretKeyRef"] == {"name": "cam-001-url", "key": "url"}
    assert "rtsp://" not in yaml.safe_dump(pod), "credentials never sit in the pod spec"


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value") for item in container["env"]}


@pytest.mark.parametrize(("volume", "source"), [
    (StateVolume(), {"emptyDir": {}}),
    (StateVolume(type="persistentVolumeClaim", storage_class="fast-ssd", size="2Gi"),
     {"persistentVolumeClaim": {"claimName": "cam-001-state"}}),
    (StateVolume(type="hostPath", host_path="/srv/detector/"),
     {"hostPath": {"path": "/srv/detector/detectors/cam-001", "type": "DirectoryOrCreate"}}),
])
def test_durable_queues_get_their_own_volume(volume: StateVolume, source: dict[str, Any]) -> None:
    pod = build_pod("cam-001", "detectors", UID, CameraSubscriptionSpec.model_validate(SPEC),
                    PodDefaults(state_volume=volume), revision="a1b2c3")
    kubernetes_validate.validate(pod, K8S, strict=True)
    volumes = {item.pop("name"): item for item in pod["spec"]["volumes"]}
    assert volumes["state"] == source
    assert volumes["cache"] == {"emptyDir": {}}, "the model cache stays on an emptyDir in every mode"
    (container,) = pod["spec"]["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert (mounts["state"], mounts["cache"]) == (STATE_MOUNT, CACHE_MOUNT)
    env = _env(container)
    assert (env["DETECTOR_STATE_DIR"], env["DETECTOR_CACHE_DIR"]) == (STATE_MOUNT, CACHE_MOUNT)
    init = pod["spec"].get("initContainers", [])
    if volume.type != "hostPath":
        assert init == [], "no container runs as root unless a hostPath needs its owner set"
        return
    (owner,) = init
    # The kubelet creates the node directory as root (fsGroup does not apply to hostPath): hand it over.
    assert owner["command"] == ["chown", "10001:10001", STATE_MOUNT]
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert owner["volumeMounts"] == [{"name": "state", "mountPath": STATE_MOUNT}]
    assert container["securityContext"]["runAsUser"] == 10001 and container["securityContext"]["runAsNonRoot"]


@pytest.mark.parametrize("storage_class", [None, "fast-ssd"])
def test_the_state_claim_is_owned_by_the_resource(storage_class: str | None) -> None:
    claim = build_claim("cam-001", "detectors", UID,
                        StateVolume(type="persistentVolumeClaim", storage_class=storage_class, size="2Gi"))
    kubernetes_validate.validate(claim, K8S, strict=True)
    assert claim["metadata"]["name"] == "cam-001-state" and claim["metadata"]["namespace"] == "detectors"
    assert claim["metadata"]["ownerReferences"] == [{
        "apiVersion": "detector.gasstation.dev/v1", "kind": "CameraSubscription", "name": "cam-001", "uid": UID,
        "controller": True, "blockOwnerDeletion": True}], "deleted with the resource, never with a pod"
    assert claim["metadata"]["labels"]["detector.gasstation.dev/subscription"] == "cam-001"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert claim["spec"].get("storageClassName") == storage_class, "unset: the cluster's default class"
