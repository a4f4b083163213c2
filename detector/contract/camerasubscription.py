"""The CameraSubscription custom resource (crds/camerasubscriptions.yaml) as pydantic models.

The broker's Kubernetes runner writes these; the operator reads them. Stream URLs never appear here:
``stream.urlSecretRef`` names the Secret key that holds the URL with its credentials.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from detector.contract.pods import CropBox

GROUP = "detector.gasstation.dev"
VERSION = "v1"
PLURAL = "camerasubscriptions"
KIND = "CameraSubscription"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretKeyRef(_Spec):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class StreamRef(_Spec):
    kind: Literal["rtsp", "snapshot"]
    urlSecretRef: SecretKeyRef
    snapshotIntervalMs: int | None = Field(None, ge=10, le=3_600_000)


class DisplaySubscriptionRef(_Spec):
    identifier: str = Field(pattern=r"^[A-Za-z0-9_.:@+-]{1,128};[A-Za-z0-9_.:@+-]{1,128}$")
    modelUrl: str = Field(pattern=r"^https?://", max_length=2048)
    modelId: int = Field(ge=0)
    modelName: str = Field(max_length=256)
    crop: CropBox | None = None


class CameraSubscriptionSpec(_Spec):
    camera: str = Field(pattern=r"^[A-Za-z0-9_.:@+-]{1,128}$")
    stream: StreamRef
    subscriptions: list[DisplaySubscriptionRef] = Field(min_length=1, max_length=64)
    gpu: int | None = Field(None, ge=0, le=8)
    targetFps: float | None = Field(None, ge=0.1, le=240)


def resource(name: str, namespace: str, spec: CameraSubscriptionSpec, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": spec.model_dump(mode="json", exclude_none=True)}
