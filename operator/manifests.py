"""Pure builders of the objects the operator creates for a CameraSubscription (no API calls here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from detector.contract.camerasubscription import API_VERSION, DISPLAYS_KEY, KIND, MODEL_URLS_KEY, CameraSubscriptionSpec
from detector.contract.environment import (
    AUTH_TOKEN_ENV,
    BROKER_URL_ENV,
    DISPLAYS_ENV,
    MODEL_URLS_ENV,
    POD_HTTP_PORT,
    POD_NAME_ENV,
    STREAM_URL_ENV,
    SUBSCRIPTION_SPEC_ENV,
)

CACHE_MOUNT = "/var/cache/detector"
STATE_MOUNT = "/var/lib/detector/state"
SUBSCRIPTION_LABEL = "detector.gasstation.dev/subscription"
REVISION_LABEL = "detector.gasstation.dev/revision"
POD_USER = 10001  # the camera image's user (Dockerfile.camera)

StateVolumeType = Literal["emptyDir", "persistentVolumeClaim", "hostPath"]


@dataclass(frozen=True)
class StateVolume:
    """Where a camera pod keeps its durable queues (DETECTOR_STATE_DIR).

    ``emptyDir`` survives a container restart only; ``persistentVolumeClaim`` (one claim per
    CameraSubscription, owned by it) and ``hostPath`` (``<host_path>/<namespace>/<name>`` on the node)
    survive the pod being replaced.
    """

    type: StateVolumeType = "emptyDir"
    storage_class: str | None = None  # None: the cluster's default StorageClass
    size: str = "1Gi"
    host_path: str = "/var/lib/camera-detector"

    @property
    def durable(self) -> bool:
        """Kept across pods: then two pods of one CameraSubscription must never run at once (see handlers)."""
        return self.type != "emptyDir"


@dataclass(frozen=True)
class PodDefaults:
    """Chart values that apply to every camera pod unless the resource overrides them."""

    image: str = "ghcr.io/example/camera-detector:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    gpu: int = 1
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    memory_limit: str = "4Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    runtime_class: str | None = None  # e.g. "nvidia" where the GPU runtime is not the node default
    service_account: str | None = None
    broker_url: str = "ws://detector-broker:8000"
    services_secret: str | None = None  # Redis/PostgreSQL credentials for the camera pods' actions
    auth_secret: str | None = None  # Secret whose key "token" is the broker's shared token (DETECTOR_AUTH_TOKEN)
    state_volume: StateVolume = field(default_factory=StateVolume)


AUTH_SECRET_KEY = "token"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}


def claim_name(name: str) -> str:
    return f"{name}-state"


def build_claim(name: str, namespace: str, uid: str, volume: StateVolume) -> dict[str, Any]:
    """The state PersistentVolumeClaim of one CameraSubscription: owned by the resource, not by a pod, so
    the garbage collector removes it with the resource and every replacement pod mounts the same claim."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": volume.size}}}
    if volume.storage_class:
        spec["storageClassName"] = volume.storage_class
    return {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name(name), "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "camera-pod", "app.kubernetes.io/part-of": "camera-detector",
                                SUBSCRIPTION_LABEL: name},
                     "ownerReferences": [owner_reference(name, uid)]},
        "spec": spec,
    }


def _state_volume(name: str, namespace: str, volume: StateVolume) -> dict[str, Any]:
    if volume.type == "persistentVolumeClaim":
        return {"name": "state", "persistentVolumeClaim": {"claimName": claim_name(name)}}
    if volume.type == "hostPath":
        path = f"{volume.host_path.rstrip('/')}/{namespace}/{name}"
        return {"name": "state", "hostPath": {"path": path, "type": "DirectoryOrCreate"}}
    return {"name": "state", "emptyDir": {}}


def _state_owner(image: str, pull_policy: str) -> dict[str, Any]:
    """An init container handing a hostPath state directory to the pod's user.

    The kubelet creates a DirectoryOrCreate hostPath as root, mode 0755, and fsGroup does not apply to
    hostPath volumes: without this the non-root camera process could not write its queues. It holds
    CAP_CHOWN only, and only in hostPath mode (which the baseline Pod Security level forbids anyway).
    """
    return {
        "name": "state-owner", "image": image, "imagePullPolicy": pull_policy,
        "command": ["chown", f"{POD_USER}:{POD_USER}", STATE_MOUNT],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}},
        "volumeMounts": [{"name": "state", "mountPath": STATE_MOUNT}],
    }


def _resources(gpu: int, defaults: PodDefaults) -> dict[str, Any]:
    requests = {"cpu": defaults.cpu_request, "memory": defaults.memory_request}
    limits: dict[str, str] = {"memory": defaults.memory_limit}
    if gpu > 0:
        limits["nvidia.com/gpu"] = str(gpu)  # quantities are strings in the API
    return {"requests": requests, "limits": limits}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": POD_HTTP_PORT}, "periodSeconds": period,
            "failureThreshold": failures, "timeoutSeconds": 3}


def _env(spec: CameraSubscriptionSpec, name: str, defaults: PodDefaults) -> list[dict[str, Any]]:
    secret = spec.stream.urlSecretRef
    env: list[dict[str, Any]] = [
        {"name": STREAM_URL_ENV, "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}}},
        # Model URLs with credentials (the spec shows them masked); absent when there are none.
        {"name": MODEL_URLS_ENV,
         "valueFrom": {"secretKeyRef": {"name": secret.name, "key": MODEL_URLS_KEY, "optional": True}}},
        # The current displays, read at every container start (the spec below holds those of the pod's creation).
        {"name": DISPLAYS_ENV,
         "valueFrom": {"secretKeyRef": {"name": secret.name, "key": DISPLAYS_KEY, "optional": True}}},
        {"name": SUBSCRIPTION_SPEC_ENV, "value": spec.model_dump_json(exclude_none=True)},
        {"name": POD_NAME_ENV, "value": name},
        {"name": BROKER_URL_ENV, "value": f"{defaults.broker_url.rstrip('/')}/internal/pods/{name}"},
        {"name": "DETECTOR_POD_HOST", "value": "0.0.0.0"},
        {"name": "DETECTOR_POD_PORT", "value": str(POD_HTTP_PORT)},
        {"name": "DETECTOR_CACHE_DIR", "value": CACHE_MOUNT},  # the writable volume, whatever the image says
        {"name": "DETECTOR_STATE_DIR", "value": STATE_MOUNT},  # durable queues, on their own volume
        {"name": "DETECTOR_LOG_FORMAT", "value": "json"},
    ]
    if defaults.auth_secret:
        env.append({"name": AUTH_TOKEN_ENV,
                    "valueFrom": {"secretKeyRef": {"name": defaults.auth_secret, "key": AUTH_SECRET_KEY}}})
    return env


def build_pod(name: str, namespace: str, uid: str, spec: CameraSubscriptionSpec, defaults: PodDefaults,
              *, revision: str) -> dict[str, Any]:
    """The camera pod of one CameraSubscription; ``revision`` (a spec hash) names a replacement pod."""
    gpu = defaults.gpu if spec.gpu is None else spec.gpu
    container: dict[str, Any] = {
        "name": "camera", "image": defaults.image, "imagePullPolicy": defaults.image_pull_policy,
        "command": ["/usr/bin/tini", "--", "python", "-P", "-m", "camera_pod"],
        "ports": [{"name": "http", "containerPort": POD_HTTP_PORT}],
        "env": _env(spec, name, defaults),
        "resources": _resources(gpu, defaults),
        "readinessProbe": _probe("/healthz", 5, 3),
        "livenessProbe": _probe("/healthz", 10, 6),
        "securityContext": {"runAsNonRoot": True, "runAsUser": POD_USER, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT},
                         {"name": "state", "mountPath": STATE_MOUNT},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    if defaults.services_secret:
        container["envFrom"] = [{"secretRef": {"name": defaults.services_secret}}]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Always",
        "securityContext": {"runAsNonRoot": True, "fsGroup": POD_USER, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "cache", "emptyDir": {}}, _state_volume(name, namespace, defaults.state_volume),
                    {"name": "tmp", "emptyDir": {}}],
        "terminationGracePeriodSeconds": 15,
    }
    if defaults.state_volume.type == "hostPath":
        pod_spec["initContainers"] = [_state_owner(defaults.image, defaults.image_pull_policy)]
    if defaults.node_selector:
        pod_spec["nodeSelector"] = dict(defaults.node_selector)
    if defaults.tolerations:
        pod_spec["tolerations"] = list(defaults.tolerations)
    if defaults.runtime_class:
        pod_spec["runtimeClassName"] = defaults.runtime_class
    if defaults.service_account:
        pod_spec["serviceAccountName"] = defaults.service_account
    else:
        pod_spec["automountServiceAccountToken"] = False  # camera pods never talk to the API server
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{name}-{revision}", "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "camera-pod", "app.kubernetes.io/part-of": "camera-detector",
                       SUBSCRIPTION_LABEL: name, REVISION_LABEL: revision},
            "ownerReferences": [owner_reference(name, uid)],
        },
        "spec": pod_spec,
    }
