"""Operator settings from ``DETECTOR_*`` environment variables (the Helm chart sets them)."""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from detector.kit.logs import LogFormat

from .manifests import PodDefaults, StateVolume, StateVolumeType

QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    namespace: str = Field("default", description="the namespace whose CameraSubscriptions this operator serves")
    camera_image: str = PodDefaults.image
    camera_image_pull_policy: str = "IfNotPresent"
    camera_gpu: int = Field(1, ge=0, le=8, description="nvidia.com/gpu per camera pod unless its resource says")
    camera_cpu_request: str = PodDefaults.cpu_request
    camera_memory_request: str = PodDefaults.memory_request
    camera_memory_limit: str = PodDefaults.memory_limit
    camera_node_selector: dict[str, str] = Field(default_factory=dict)
    camera_tolerations: list[dict[str, Any]] = Field(default_factory=list)
    camera_runtime_class: str | None = None
    camera_service_account: str | None = None
    camera_state_volume: StateVolumeType = Field(
        StateVolume.type, description="where camera pods keep durable queues: emptyDir (lost when the pod is "
                                      "replaced), persistentVolumeClaim (one per CameraSubscription) or hostPath")
    camera_state_storage_class: str | None = Field(None, description="StorageClass of the claims; unset: the default")
    camera_state_size: str = Field(StateVolume.size, pattern=QUANTITY, description="storage request of each claim")
    camera_state_host_path: str = Field(StateVolume.host_path, pattern=r"^/",
                                        description="node directory; each pod gets <it>/<namespace>/<name>")
    broker_url: str = PodDefaults.broker_url
    services_secret: str | None = Field(None, description="Secret with Redis/PostgreSQL overrides for camera pods")
    auth_secret: str | None = Field(None, description="Secret whose key 'token' camera pods present to the broker")
    status_interval_sec: float = Field(10.0, ge=0.1, description="how often pod health is read into status")
    max_concurrent_rolls: int = Field(4, ge=1, le=1000, description="camera pods replaced at once (a new image "
                                      "or resources roll every camera; the others wait their turn)")
    peering: str = Field("detector", description="KopfPeering name: replicas with the same name never both act")
    peering_priority: int = Field(default_factory=lambda: random.randint(1, 1_000_000),
                                  description="the highest-priority replica works; distinct by default")
    operator_health_port: int = Field(8080, ge=1, le=65535, description="Kopf's liveness endpoint")
    log_level: str = Field("INFO", description="the operator's own log level")
    log_format: LogFormat = Field("json", description="json or text; any other value stops the operator at start")

    def pod_defaults(self) -> PodDefaults:
        return PodDefaults(
            image=self.camera_image, image_pull_policy=self.camera_image_pull_policy, gpu=self.camera_gpu,
            cpu_request=self.camera_cpu_request, memory_request=self.camera_memory_request,
            memory_limit=self.camera_memory_limit, node_selector=dict(self.camera_node_selector),
            tolerations=list(self.camera_tolerations), runtime_class=self.camera_runtime_class,
            service_account=self.camera_service_account, broker_url=self.broker_url,
            services_secret=self.services_secret, auth_secret=self.auth_secret,
            state_volume=StateVolume(
                type=self.camera_state_volume, storage_class=self.camera_state_storage_class or None,
                size=self.camera_state_size, host_path=self.camera_state_host_path))
