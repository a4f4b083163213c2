"""Keeps one camera stream alive: connect, read, detect stalls, back off, reconnect, never hang."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from camera_pod.inference.models import Image
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.errors import EndOfStream, StreamConfigError, StreamError, StreamStalled
from camera_pod.streams.files import FileConnection
from camera_pod.streams.frames import LatestFrame
from camera_pod.streams.rtsp import RtspConnection
from camera_pod.streams.snapshot import SnapshotConnection
from camera_pod.streams.state import StreamState, StreamStats, StreamStatus

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5


class Connection(Protocol):
    def __enter__(self) -> Connection: ...

    def __exit__(self, *exc: object) -> None: ...

    def frames(self, stopping: Callable[[], bool]) -> Iterator[tuple[Image, float]]: ...


def backoff_delay(attempt: int, ceiling: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: 0.5 s, 1 s, 2 s, ... up to ``ceiling``."""
    upper = min(ceiling, INITIAL_BACKOFF_S * (2 ** max(0, attempt - 1)))
    return rng.uniform(upper / 2, upper)


class StreamSupervisor:
    """One thread per camera URL; frames go to ``output`` (latest only)."""

    def __init__(self, config: StreamConfig, *, name: str = "") -> None:
        self.config = config
        self.output = LatestFrame()
        self.stats = StreamStats()
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name=f"stream-{name or config.kind}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop promptly, even in the middle of a backoff; True when the thread has ended."""
        self._stop.set()
        self.output.close()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def status(self) -> StreamStatus:
        return self.stats.snapshot(self.output.dropped)

    def _connect(self) -> Connection:
        if self.config.kind == "rtsp":
            return RtspConnection(self.config, self.stats)
        if self.config.kind == "snapshot":
            return SnapshotConnection(self.config, self.stats, self._stop)
        return FileConnection(self.config)

    def _run(self) -> None:
        try:
            self._supervise()
        finally:
            if self._stop.is_set():
                self.stats.set_state(StreamState.STOPPED)

    def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self.stats.set_state(StreamState.CONNECTING)
            try:
                with self._connect() as connection:
                    self.stats.forget_last_frame()
                    for image, captured_at in connection.frames(lambda: self._stop.is_set()):
                        self._deliver(image, captured_at)
                        failures = 0
            except EndOfStream as exc:
                self._finish(StreamState.STOPPED, str(exc))
                return
            except StreamConfigError as exc:
                self._finish(StreamState.FAILED, str(exc))
                return
            except StreamError as exc:
                failures += 1
                if not self._back_off(exc, failures):
                    return
            except Exception as exc:  # a bug or an unexpected library error must not kill the camera
                log.exception("stream reader crashed; reconnecting", extra={"url": self.config.safe_url})
                failures += 1
                if not self._back_off(StreamError(f"{type(exc).__name__}: {exc}"), failures):
                    return

    def _deliver(self, image: Image, captured_at: float) -> None:
        self.stats.frame()
        self.output.put(image, captured_at, wait_taken=self.config.every_frame)

    def _back_off(self, error: StreamError, failures: int) -> bool:
        if self._stop.is_set():
            return False
        retries = self.config.max_retries
        if retries >= 0 and failures > retries:
            self._finish(StreamState.FAILED, f"gave up after {retries} retries: {error}")
            return False
        state = StreamState.STALLED if isinstance(error, StreamStalled) else StreamState.BACKING_OFF
        self.stats.set_state(state, str(error))
        self.stats.reconnects += 1
        delay = max(backoff_delay(failures, self.config.reconnect_interval_sec, self._rng),
                    min(error.delay, self.config.reconnect_interval_sec))
        log.warning("stream down, reconnecting", extra={"url": self.config.safe_url, "error": str(error),
                                                          "retry_in_s": round(delay, 2), "failures": failures})
        return not self._stop.wait(delay)

    def _finish(self, state: StreamState, reason: str) -> None:
        log.error("stream stopped", extra={"url": self.config.safe_url, "state": state.value, "reason": reason})
        self.stats.set_state(state, reason)
        self.output.close()
