"""What a stream is doing right now, for the rest of the code, metrics and stateReport."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass


class StreamState(enum.StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    STALLED = "stalled"
    BACKING_OFF = "backing-off"
    FAILED = "failed"  # permanent: retries exhausted or a configuration error
    STOPPED = "stopped"


@dataclass(frozen=True)
class StreamStatus:
    state: StreamState
    last_frame_at: float | None
    fps: float
    frames: int  # delivered
    decoded: int  # decoded by the reader (RTSP), delivered or skipped for target_fps
    reconnects: int
    decode_errors: int
    dropped_frames: int
    last_error: str | None

    @property
    def online(self) -> bool:
        return self.state is StreamState.ONLINE


class StreamStats:
    """Mutable counters owned by one supervisor thread; read through ``snapshot()``."""

    _FPS_SMOOTHING = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = StreamState.CONNECTING
        self.last_frame_at: float | None = None
        self._last_frame_mono: float | None = None
        self.fps = 0.0
        self.frames = 0
        self.decoded = 0
        self.reconnects = 0
        self.decode_errors = 0
        self.last_error: str | None = None

    def set_state(self, state: StreamState, error: str | None = None) -> None:
        with self._lock:
            self.state = state
            if error is not None:
                self.last_error = error

    def frame(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._last_frame_mono is not None and now > self._last_frame_mono:
                instant = 1.0 / (now - self._last_frame_mono)
                self.fps = instant if self.fps == 0 else (
                    self._FPS_SMOOTHING * instant + (1 - self._FPS_SMOOTHING) * self.fps)
            self._last_frame_mono = now
            self.last_frame_at = time.time()
            self.frames += 1
            self.state = StreamState.ONLINE

    def frame_age(self) -> float | None:
        with self._lock:
            return None if self._last_frame_mono is None else time.monotonic() - self._last_frame_mono

    def forget_last_frame(self) -> None:
        """After a reconnect the stall clock restarts from the new connection."""
        with self._lock:
            self._last_frame_mono = None
            self.fps = 0.0

    def count_decoded(self) -> None:
        with self._lock:
            self.decoded += 1

    def count_decode_error(self, error: str) -> None:
        with self._lock:
            self.decode_errors += 1
            self.last_error = error

    def snapshot(self, dropped: int) -> StreamStatus:
        with self._lock:
            return StreamStatus(self.state, self.last_frame_at, round(self.fps, 2), self.frames, self.decoded,
                                self.reconnects,
                                self.decode_errors, dropped, self.last_error)
