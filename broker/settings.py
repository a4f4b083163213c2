"""Broker settings: env ``DETECTOR_*`` (the original worker's names kept), a config file, or flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerSettings(BaseSettings):
    # hide_input_in_errors: a refused value (the auth token) is never printed back.
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore", hide_input_in_errors=True)

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = Field(None, description="how pods reach the broker; default ws://127.0.0.1:<port>")
    heartbeat_interval_sec: float = Field(2.0, gt=0)
    backend_grace_period_sec: float = Field(300.0, ge=0, description="cameras keep running without a backend")
    poll_interval_ms: int = Field(100, ge=1, description="seed name; snapshot default interval")
    max_streams: int = Field(20, ge=1, description="camera streams (pods) at most")
    target_fps: float | None = Field(None, gt=0)
    reconnect_interval_sec: float = Field(30.0, ge=0.5)
    max_retries: int = Field(-1, ge=-1)
    event_mode: Literal["visit", "frame"] = "visit"
    stable_frames: int = Field(3, ge=1, description="consistent frames before a visit is announced")
    visit_gap_sec: float = Field(0.7, gt=0, description="no vehicle this long ends a visit")
    max_message_bytes: int = Field(1 << 20, ge=1024)
    event_max_age_sec: float = Field(600.0, gt=0, description="detections older than this when a backend is "
                                                              "there to take them are dropped, not delivered")
    max_kept_events: int = Field(10_000, ge=1, description="messages kept in memory while no backend is connected; "
                                                           "past it the pods keep the rest on their disks")
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "camera-detector",
                            description="local runner: <cache_dir>/broker/pods.json remembers the running cameras "
                                        "across broker restarts (the pods' DETECTOR_CACHE_DIR too)")
    runner: Literal["local", "kubernetes"] = Field(
        "local", description="local: camera pods are child processes; kubernetes: CameraSubscriptions")
    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                           description="kubernetes runner: where the CameraSubscriptions live")
    broker_id: str = Field("detector-broker", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
                           description="kubernetes runner: the managed-by label of this broker's resources")
    kube_apply_concurrency: int = Field(
        16, ge=1, le=256,
        description="kubernetes runner: cameras whose Secret and CameraSubscription are written at once")
    auth_token: SecretStr | None = Field(
        None, min_length=16, max_length=4096,
        description="shared token the backend (and camera pods) must present on /, /camera/ and /internal/pods/; "
                    "unset: no authentication (the embedded default)")

    @field_validator("auth_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> BrokerSettings:
        """Precedence: flags > environment > config file (JSON) > defaults."""
        from_file: dict[str, Any] = json.loads(config_file.read_text()) if config_file else {}
        environment = cls()
        merged = {**from_file, **environment.model_dump(exclude_unset=True),
                  **{key: value for key, value in overrides.items() if value is not None}}
        return cls(**merged)

    def pod_broker_url(self, pod: str) -> str:
        base = self.public_url or f"ws://127.0.0.1:{self.port}"
        return f"{base.rstrip('/')}/internal/pods/{pod}"
