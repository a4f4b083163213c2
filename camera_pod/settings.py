"""Camera-pod settings from ``DETECTOR_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "camera-detector"


class PodSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    cache_dir: Path = Field(default_factory=_default_cache, description="downloaded and extracted .mpta archives")
    state_dir: Path | None = Field(None, description="durable queues (action and event outboxes); keep it on a disk "
                                                     "that outlives the pod; empty: <cache_dir>/outbox")
    max_mpta_bytes: int = Field(2 << 30, ge=1, description="largest .mpta download accepted")
    mpta_connect_timeout_s: float = Field(10.0, gt=0)
    mpta_read_timeout_s: float = Field(60.0, gt=0)
    mpta_total_timeout_s: float = Field(900.0, gt=0, description="a whole .mpta download, however slowly it trickles")
    auth_token: SecretStr | None = Field(None, description="presented to the broker (its DETECTOR_AUTH_TOKEN)")
    inference_workers: int = Field(4, ge=1, le=64, description="threads for model calls (parallel branches)")
    ocr_threads: int = Field(1, ge=1, le=64, description="ONNX Runtime threads per text read (licence plates); "
                                                         "more only where the pod has cores to spare")
    classify_interval_s: float = Field(2.0, ge=0, description="re-run a vehicle's classifiers at least this often; "
                                                                  "0 classifies every frame")
    classify_growth: float = Field(1.3, ge=1.0, description="re-run them when the vehicle's box grows this much")
    inference_backend: Literal["auto", "onnx", "ultralytics"] = Field(
        "auto", description="onnx: each .pt exported once to ONNX and run by ONNX Runtime; ultralytics: torch; "
                            "auto: onnx, except on an NVIDIA GPU machine whose ONNX Runtime has no GPU provider")
    inference_providers: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated ONNX Runtime providers, in order; empty: TensorRT, CUDA, CPU as available")
    inference_threads: int | None = Field(
        None, ge=1, le=256, description="ONNX Runtime threads per model call; empty: the CPUs this process may use")
    inference_device: str = Field(
        "auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="where the ultralytics backend runs models: cpu, cuda or cuda:N; auto: cuda when torch sees one")
    onnx_imgsz: int | None = Field(
        None, ge=32, le=4096, multiple_of=32, description="export detectors at this input size; empty: training size")
    inference_precision: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="ONNX models on the CPU: fp32; int8 (calibrated on the archive's calibration/ images or "
                            "the camera's frames); auto: int8 where the CPU has VNNI/AMX and int8 agrees with fp32 "
                            "and is faster on this model, else fp32")
    onnx_rect: bool = Field(
        True, description="detectors take the smallest stride-multiple rectangle around the frame; false: a square")
    gating: bool = Field(True, description="change gating: the detector runs on a frame only when the picture "
                                           "changed, a visit in progress needs it, or the last run is "
                                           "gating_max_skip_s old; false: on every frame")
    gating_pixel_threshold: float = Field(12.0, gt=0, le=255, description="grey levels a thumbnail cell must move "
                                                                         "by to count as changed")
    gating_area_threshold: float = Field(0.005, ge=0, le=1, description="share of the cells that must change for "
                                                                        "the detector to run")
    gating_max_skip_s: float = Field(2.0, gt=0, le=3600, description="the detector runs at least this often while a "
                                                                     "display's picture stays the same")
    gating_ignore: Annotated[tuple[tuple[float, float, float, float], ...], NoDecode] = Field(
        (), description="regions where change is ignored (a clock overlay): 'x1,y1,x2,y2' fractions of the "
                        "display's image, separated by ';'")
    action_outbox: bool = Field(True, description="Redis/PostgreSQL writes go through the durable outbox on local "
                                                  "disk (state_dir); false: written directly, lost on error")
    action_outbox_max_items: int = Field(10_000, ge=1, description="queued writes at most; past it the oldest images "
                                                                  "are dropped first, then the oldest of any kind")
    action_outbox_max_bytes: int = Field(512 << 20, ge=1024, description="queued bytes at most (same dropping rule)")
    action_outbox_max_backoff_s: float = Field(30.0, gt=0, description="longest wait between retries of a down service")
    action_outbox_close_timeout_s: float = Field(3.0, ge=0, description="on shutdown, time to apply what is queued; "
                                                                        "the rest stays on disk for the next start")
    event_outbox_max_events: int = Field(10_000, ge=1, description="detection events kept on disk until the broker "
                                                                  "has delivered them; past it the oldest are dropped")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"

    @property
    def durable_dir(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.cache_dir / "outbox"

    @field_validator("gating_ignore", mode="before")
    @classmethod
    def _split_regions(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(tuple(float(v) for v in region.split(",")) for region in value.split(";") if region.strip())
        return value

    @field_validator("gating_ignore")
    @classmethod
    def _check_regions(cls, value: tuple[tuple[float, float, float, float], ...]) -> Any:
        for x1, y1, x2, y2 in value:
            if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
                raise ValueError(f"region {x1},{y1},{x2},{y2}: want 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
        return value

    @field_validator("inference_providers", mode="before")
    @classmethod
    def _split_providers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value
