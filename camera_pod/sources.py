"""Frames from a file, an image or a stream URL, in order (for tools and tests).

The live readers with reconnects and latest-frame semantics are camera_pod.streams (Step 2).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from camera_pod.inference.models import Image
from detector.kit.errors import PermanentError
from detector.kit.redaction import redact_text, redact_url

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass(frozen=True)
class SourceFrame:
    index: int
    image: Image
    captured_at: float
    fps: float | None


def _image_frames(path: Path) -> Iterator[SourceFrame]:
    decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if decoded is None:
        raise PermanentError(f"{path}: not a readable image")
    yield SourceFrame(0, decoded.astype(np.uint8, copy=False), time.time(), None)


def _video_frames(source: str) -> Iterator[SourceFrame]:
    options = {"rtsp_transport": "tcp"} if source.startswith(("rtsp://", "rtsps://")) else {}
    try:
        container = av.open(source, options=options, timeout=(10.0, 10.0))
    except (av.FFmpegError, OSError) as exc:
        raise PermanentError(f"{redact_url(source)}: cannot open: {redact_text(str(exc))}") from exc
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else None
        for index, frame in enumerate(container.decode(stream)):
            yield SourceFrame(index, frame.to_ndarray(format="bgr24").astype(np.uint8, copy=False), time.time(), fps)


def frames(source: str) -> Iterator[SourceFrame]:
    if Path(source).suffix.lower() in IMAGE_SUFFIXES and Path(source).is_file():
        return _image_frames(Path(source))
    return _video_frames(source)
