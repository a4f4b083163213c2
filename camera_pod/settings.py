"""Camera-pod settings from ``DETECTOR_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache() -> Path:
    return Path.home() / ".cache" / "camera-detector"


class PodSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    cache_dir: Path = Field(default_factory=_default_cache, description="downloaded and extracted .mpta archives")
    max_mpta_bytes: int = Field(2 << 30, ge=1, description="largest .mpta download accepted")
    mpta_connect_timeout_s: float = Field(10.0, gt=0)
    mpta_read_timeout_s: float = Field(60.0, gt=0)
    inference_workers: int = Field(4, ge=1, le=64, description="threads for model calls (parallel branches)")
    classify_interval_s: float = Field(2.0, ge=0, description="re-run a vehicle's classifiers at least this often; "
                                                                  "0 classifies every frame")
    classify_growth: float = Field(1.3, ge=1.0, description="re-run them when the vehicle's box grows this much")
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"
