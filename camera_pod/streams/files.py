"""Video or image files, for tools and tests: every frame in order, or paced like a live camera."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from camera_pod.inference.models import Image
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.errors import EndOfStream, StreamConfigError
from camera_pod.streams.frames import to_bgr

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class FileConnection:
    def __init__(self, config: StreamConfig) -> None:
        self._path = Path(config.url)
        self._config = config
        if not self._path.is_file():
            raise StreamConfigError(f"{self._path}: no such file")

    def __enter__(self) -> FileConnection:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def frames(self, stopping: Callable[[], bool]) -> Iterator[tuple[Image, float]]:
        if self._path.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(self._path), cv2.IMREAD_COLOR)
            if image is None:
                raise StreamConfigError(f"{self._path}: not a readable image")
            yield image.astype(np.uint8, copy=False), time.time()
            return
        try:
            container = av.open(str(self._path))
        except (av.FFmpegError, OSError) as exc:
            raise StreamConfigError(f"{self._path}: cannot open: {exc}") from exc
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or 0) or 10.0
            started = time.monotonic()
            for index, frame in enumerate(container.decode(stream)):
                if stopping():
                    return
                if not self._config.every_frame:
                    # Paced like a live camera so latest-frame consumers see realistic drops.
                    delay = started + index / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield to_bgr(frame), time.time()
        raise EndOfStream(f"{self._path}: end of file")
