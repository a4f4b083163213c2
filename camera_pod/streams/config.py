"""Settings of one camera stream (from the subscription and the runtime configuration)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from detector.kit.redaction import redact_url

StreamKind = Literal["rtsp", "snapshot", "file"]


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)  # URLs carry credentials

    url: str = Field(min_length=1, repr=False, description="rtsp(s)://, http(s):// snapshot URL, or a file path")
    kind: StreamKind
    transport: Literal["tcp", "udp"] = "tcp"
    target_fps: float | None = Field(None, gt=0, le=240, description="deliver at most this many frames/s")
    snapshot_interval_ms: int = Field(1000, ge=10, le=3_600_000)
    open_timeout_s: float = Field(10.0, gt=0)
    read_timeout_s: float = Field(10.0, gt=0)
    reconnect_interval_sec: float = Field(30.0, ge=0.5, description="largest backoff between reconnects")
    max_retries: int = Field(-1, ge=-1, description="-1 = forever; counted from the last good frame")
    stall_timeout_s: float | None = Field(None, gt=0, description="default: 3 frame intervals, at least 5 s")
    max_snapshot_bytes: int = Field(20 << 20, ge=1024)
    every_frame: bool = Field(False, description="files: deliver every frame in order instead of the latest")

    @property
    def expected_interval_s(self) -> float:
        if self.kind == "snapshot":
            return self.snapshot_interval_ms / 1000
        return 1.0 / self.target_fps if self.target_fps else 0.1

    @property
    def stall_timeout(self) -> float:
        if self.stall_timeout_s is not None:
            return self.stall_timeout_s
        return max(5.0, 3 * self.expected_interval_s)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)
