"""One reader per distinct camera, shared by every subscription of it, reference-counted."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from camera_pod.streams.config import StreamConfig
from camera_pod.streams.cropping import Crop, apply_crop
from camera_pod.streams.frames import Frame
from camera_pod.streams.state import StreamStatus
from camera_pod.streams.supervisor import StreamSupervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CroppedFrame:
    frame: Frame  # the full frame (for /image)
    image: object  # the subscription's crop of it (a view)


@dataclass
class StreamSubscription:
    """One consumer of a shared stream; ``next_frame`` never returns the same frame twice."""

    identifier: str
    crop: Crop | None
    supervisor: StreamSupervisor
    _last_sequence: int = field(default=0, init=False)

    def next_frame(self, timeout: float) -> CroppedFrame | None:
        return self._cropped(self.supervisor.output.wait_newer(self._last_sequence, timeout))

    async def next_frame_async(self, timeout: float) -> CroppedFrame | None:
        return self._cropped(await self.supervisor.output.wait_newer_async(self._last_sequence, timeout))

    def _cropped(self, frame: Frame | None) -> CroppedFrame | None:
        if frame is None:
            return None
        self._last_sequence = frame.sequence
        return CroppedFrame(frame, apply_crop(frame.image, self.crop))

    def latest(self) -> Frame | None:
        return self.supervisor.output.latest()

    def status(self) -> StreamStatus:
        return self.supervisor.status()


class StreamHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[StreamConfig, StreamSupervisor] = {}
        self._subscribers: dict[StreamConfig, set[str]] = {}

    def subscribe(self, identifier: str, config: StreamConfig, crop: Crop | None = None) -> StreamSubscription:
        with self._lock:
            supervisor = self._readers.get(config)
            if supervisor is None:
                supervisor = StreamSupervisor(config, name=identifier)
                self._readers[config] = supervisor
                self._subscribers[config] = set()
                log.info("stream started", extra={"url": config.safe_url, "subscription": identifier})
                supervisor.start()
            self._subscribers[config].add(identifier)
            return StreamSubscription(identifier, crop, supervisor)

    def unsubscribe(self, subscription: StreamSubscription) -> None:
        config = subscription.supervisor.config
        with self._lock:
            subscribers = self._subscribers.get(config)
            if subscribers is None:
                return
            subscribers.discard(subscription.identifier)
            if subscribers:
                return
            del self._subscribers[config]
            supervisor = self._readers.pop(config)
        if not supervisor.stop():
            log.error("stream reader did not stop in time", extra={"url": config.safe_url})
        log.info("stream stopped", extra={"url": config.safe_url})

    def readers(self) -> int:
        with self._lock:
            return len(self._readers)

    def close(self) -> None:
        with self._lock:
            supervisors = list(self._readers.values())
            self._readers.clear()
            self._subscribers.clear()
        for supervisor in supervisors:
            supervisor.stop()
