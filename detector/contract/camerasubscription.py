"""The CameraSubscription custom resource (crds/camerasubscriptions.yaml) as pydantic models.

The broker's Kubernetes runner writes these; the operator reads them. Stream URLs never appear here:
``stream.urlSecretRef`` names the Secret key that holds the URL with its credentials. A model URL with
credentials appears masked (``https://user:***@host/...``); the real one is in the same Secret, under
``MODEL_URLS_KEY`` (JSON: display identifier → URL), which camera pods receive as ``DETECTOR_MODEL_URLS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from detector.contract.pods import CropBox, DisplaySubscription, PodSpec, StreamSpec
from detector.kit.redaction import redact_url
from detector.kit.urls import HTTP_SCHEMES, check_url

GROUP = "detector.gasstation.dev"
VERSION = "v1"
PLURAL = "camerasubscriptions"
KIND = "CameraSubscription"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MODEL_URLS_KEY = "models"  # key of the stream URL's Secret with the model URLs that carry credentials
DISPLAYS_KEY = "displays"  # key of the same Secret with the current display subscriptions (``Displays`` JSON)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


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

    @field_validator("modelUrl")
    @classmethod
    def _model_url(cls, value: str) -> str:
        return check_url(value, HTTP_SCHEMES, what="modelUrl")


class CameraSubscriptionSpec(_Spec):
    camera: str = Field(pattern=r"^[A-Za-z0-9_.:@+-]{1,128}$")
    stream: StreamRef
    subscriptions: list[DisplaySubscriptionRef] = Field(min_length=1, max_length=64)
    gpu: int | None = Field(None, ge=0, le=8)
    targetFps: float | None = Field(None, ge=0.1, le=240)
    reconnectIntervalSec: float = Field(30.0, ge=0.5, le=3600)
    maxRetries: int = Field(-1, ge=-1)
    eventMode: Literal["visit", "frame"] = "visit"
    stableFrames: int = Field(3, ge=1, le=1000)
    visitGapSec: float = Field(0.7, ge=0.01, le=3600)
    pollIntervalMs: int = Field(0, ge=0, le=3_600_000)


def resource(name: str, namespace: str, spec: CameraSubscriptionSpec, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": spec.model_dump(mode="json", exclude_none=True)}


def spec_from_pod(pod: PodSpec, url_secret: SecretKeyRef) -> CameraSubscriptionSpec:
    """The resource the broker writes for a camera pod: everything but the URL, which stays in the Secret."""
    if pod.stream.kind == "file":
        raise ValueError("file streams are for local runs only")
    return CameraSubscriptionSpec(
        camera=pod.subscriptions[0].identifier.split(";", 1)[1],
        stream=StreamRef(kind=pod.stream.kind, urlSecretRef=url_secret,
                         snapshotIntervalMs=pod.stream.snapshot_interval_ms),
        subscriptions=[DisplaySubscriptionRef(identifier=d.identifier, modelUrl=redact_url(d.model_url),
                                              modelId=d.model_id, modelName=d.model_name, crop=d.crop)
                       for d in pod.subscriptions],
        targetFps=pod.target_fps, reconnectIntervalSec=pod.reconnect_interval_sec, maxRetries=pod.max_retries,
        eventMode=pod.event_mode, stableFrames=pod.stable_frames, visitGapSec=pod.visit_gap_s,
        pollIntervalMs=pod.poll_interval_ms)


def secret_model_urls(pod: PodSpec) -> dict[str, str]:
    """The model URLs that carry credentials, by display identifier: the resource shows them masked."""
    return {d.identifier: d.model_url for d in pod.subscriptions if redact_url(d.model_url) != d.model_url}


def pod_from_spec(name: str, spec: CameraSubscriptionSpec, stream_url: str, broker_url: str,
                  model_urls: Mapping[str, str] | None = None) -> PodSpec:
    """The inverse of ``spec_from_pod``: what a camera pod in the cluster (or a restarted broker) rebuilds.

    ``model_urls`` (from the Secret) replace the masked model URLs of the displays they name.
    """
    secret_urls = model_urls or {}
    return PodSpec(
        name=name, stream=StreamSpec(url=stream_url, kind=spec.stream.kind,
                                     snapshot_interval_ms=spec.stream.snapshotIntervalMs),
        subscriptions=[DisplaySubscription(identifier=s.identifier, model_url=secret_urls.get(s.identifier, s.modelUrl),
                                           model_id=s.modelId, model_name=s.modelName, crop=s.crop)
                       for s in spec.subscriptions],
        broker_url=broker_url, target_fps=spec.targetFps, reconnect_interval_sec=spec.reconnectIntervalSec,
        max_retries=spec.maxRetries, event_mode=spec.eventMode, stable_frames=spec.stableFrames,
        visit_gap_s=spec.visitGapSec, poll_interval_ms=spec.pollIntervalMs)


Phase = Literal["Pending", "Running", "Degraded", "Failed"]


class Condition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    lastTransitionTime: str | None = None


class CameraSubscriptionStatus(BaseModel):
    """``status`` of a CameraSubscription: written by the operator, read by the broker and ``kubectl get``."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    pod: str | None = None
    podIP: str | None = None
    subscribers: int | None = None
    fps: float | None = None
    lastFrameTime: str | None = None
    lastError: str | None = None
    observedGeneration: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
