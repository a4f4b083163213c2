"""Operator settings come from the chart's env and shape every camera pod."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
from pydantic import ValidationError

from detector.contract.camerasubscription import CameraSubscriptionSpec
from detector_operator.manifests import StateVolume, build_pod
from detector_operator.settings import OperatorSettings
from tests.operator.test_manifests import SPEC


def test_env_values_reach_the_camera_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    for name, value in {"DETECTOR_CAMERA_IMAGE": "registry.example/camera:1.2.3", "DETECTOR_CAMERA_GPU": "2",
                        "DETECTOR_CAMERA_NODE_SELECTOR": json.dumps({"nvidia.com/gpu.present": "true"}),
                        "DETECTOR_CAMERA_TOLERATIONS": json.dumps([toleration]),
                        "DETECTOR_CAMERA_RUNTIME_CLASS": "nvidia", "DETECTOR_SERVICES_SECRET": "detector-services",
                        "DETECTOR_BROKER_URL": "ws://detector-broker.cams.svc:8000"}.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings()
    pod = build_pod("cam-001", "cams", "uid-1", CameraSubscriptionSpec.model_validate(SPEC),
                    settings.pod_defaults(), revision="abc")
    kubernetes_validate.validate(pod, "1.37.0", strict=True)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    assert container["image"] == "registry.example/camera:1.2.3"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and spec["tolerations"] == [toleration]
    assert spec["runtimeClassName"] == "nvidia" and spec["automountServiceAccountToken"] is False
    assert container["envFrom"] == [{"secretRef": {"name": "detector-services"}}]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["DETECTOR_BROKER_URL"] == "ws://detector-broker.cams.svc:8000/internal/pods/cam-001"
    assert env["DETECTOR_CACHE_DIR"] in {mount["mountPath"] for mount in container["volumeMounts"]}, \
        "models are cached on a writable volume (the root filesystem is read-only)"


def test_cpu_only_clusters_get_no_gpu_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DETECTOR_CAMERA_GPU", "0")
    pod = build_pod("cam-001", "cams", "uid-1", CameraSubscriptionSpec.model_validate(SPEC),
                    OperatorSettings().pod_defaults(), revision="abc")
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"]["limits"]


def test_replicas_get_distinct_peering_priorities() -> None:
    assert len({OperatorSettings().peering_priority for _ in range(5)}) > 1


def test_the_auth_secret_gives_camera_pods_the_broker_token(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = CameraSubscriptionSpec.model_validate(SPEC)
    without = build_pod("cam-001", "cams", "uid-1", spec, OperatorSettings().pod_defaults(), revision="abc")
    assert "DETECTOR_AUTH_TOKEN" not in {item["name"] for item in without["spec"]["containers"][0]["env"]}

    monkeypatch.setenv("DETECTOR_AUTH_SECRET", "cams-detector-auth")
    pod = build_pod("cam-001", "cams", "uid-1", spec, OperatorSettings().pod_defaults(), revision="abc")
    kubernetes_validate.validate(pod, "1.37.0", strict=True)
    (token,) = [item for item in pod["spec"]["containers"][0]["env"] if item["name"] == "DETECTOR_AUTH_TOKEN"]
    assert token == {"name": "DETECTOR_AUTH_TOKEN",
                     "valueFrom": {"secretKeyRef": {"name": "cams-detector-auth", "key": "token"}}}


def test_the_state_volume_comes_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorSettings().pod_defaults().state_volume == StateVolume(), "unset: emptyDir, as before"
    for name, value in {"DETECTOR_CAMERA_STATE_VOLUME": "persistentVolumeClaim",
                        "DETECTOR_CAMERA_STATE_STORAGE_CLASS": "fast-ssd", "DETECTOR_CAMERA_STATE_SIZE": "2Gi"}.items():
        monkeypatch.setenv(name, value)
    assert OperatorSettings().pod_defaults().state_volume == StateVolume(
        type="persistentVolumeClaim", storage_class="fast-ssd", size="2Gi")
    monkeypatch.setenv("DETECTOR_CAMERA_STATE_STORAGE_CLASS", "")
    assert OperatorSettings().pod_defaults().state_volume.storage_class is None, "empty: the cluster's default"


@pytest.mark.parametrize(("name", "value"), [
    ("DETECTOR_CAMERA_STATE_VOLUME", "nfs"),
    ("DETECTOR_CAMERA_STATE_SIZE", "lots"),
    ("DETECTOR_CAMERA_STATE_HOST_PATH", "relative/dir"),
])
def test_a_bad_state_volume_setting_stops_the_operator(monkeypatch: pytest.MonkeyPatch, name: str,
                                                        value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("DETECTOR_").lower()):
        OperatorSettings()
