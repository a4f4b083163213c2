"""RTSP (and any FFmpeg-readable live URL) through PyAV, with open/read timeouts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import av

from camera_pod.inference.models import Image
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.errors import StreamError, StreamStalled
from camera_pod.streams.frames import to_bgr
from camera_pod.streams.state import StreamStats
from detector.kit.redaction import redact_text

log = logging.getLogger(__name__)


ONE_DECODER_THREAD_MAX_PIXELS = 1920 * 1080


def use_decoder_threads(stream: av.video.stream.VideoStream) -> bool:
    """Up to 1080p one thread decodes. FFmpeg's frame threads cost more CPU in all (measured on a 640x480 H.264
    camera: 0.62 ms per frame against 0.37 on one thread: hand-overs and wake-ups), and a machine runs a decoder
    per camera side by side, so the cores are better spent on more cameras. Larger frames get FFmpeg's threads,
    so that one camera's decode keeps up on its own."""
    context = stream.codec_context
    return not 0 < context.width * context.height <= ONE_DECODER_THREAD_MAX_PIXELS


def _options(config: StreamConfig) -> dict[str, str]:
    options: dict[str, str] = {}
    if config.url.lower().startswith(("rtsp://", "rtsps://")):
        options["rtsp_transport"] = config.transport
    return options


class RtspConnection:
    """One connection to the camera; the supervisor makes a new one after any failure."""

    def __init__(self, config: StreamConfig, stats: StreamStats) -> None:
        self._config = config
        self._stats = stats
        self._container: av.container.InputContainer | None = None
        self._last_frame = time.monotonic()

    def __enter__(self) -> RtspConnection:
        # PyAV's timeout covers opening and each blocking read, so a silent server cannot hang us.
        timeout = (self._config.open_timeout_s, min(self._config.read_timeout_s, self._config.stall_timeout))
        try:
            self._container = av.open(self._config.url, options=_options(self._config), timeout=timeout)
        except (av.FFmpegError, OSError) as exc:
            raise StreamError(f"cannot open {self._config.safe_url}: {redact_text(str(exc))}") from exc
        if not self._container.streams.video:
            self.__exit__()
            raise StreamError(f"{self._config.safe_url}: no video stream")
        self._last_frame = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames(self, stopping: Callable[[], bool]) -> Iterator[tuple[Image, float]]:
        assert self._container is not None
        stream = self._container.streams.video[0]
        if use_decoder_threads(stream):
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = 1
        interval = 1.0 / self._config.target_fps if self._config.target_fps else 0.0
        rate = float(stream.average_rate or 0)
        if interval and rate and self._config.target_fps and self._config.target_fps <= rate / 2:
            # Frames no other frame refers to (B-frames) need not be decoded at all when we keep few.
            stream.codec_context.skip_frame = "NONREF"
        next_due = 0.0
        try:
            for packet in self._container.demux(stream):
                if stopping():
                    return
                self._check_stall()
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError as exc:
                    self._stats.count_decode_error(f"decode: {exc}")
                    continue
                for frame in decoded:
                    self._stats.count_decoded()
                    now = self._last_frame = time.monotonic()
                    if now < next_due:
                        continue  # decoded (later frames reference it) but never converted or delivered
                    next_due = max(next_due + interval, now - interval) if interval else 0.0
                    yield to_bgr(frame), time.time()
        except av.FFmpegError as exc:
            raise StreamError(f"{self._config.safe_url}: {redact_text(str(exc))}") from exc
        raise StreamError(f"{self._config.safe_url}: stream ended")

    def _check_stall(self) -> None:
        # Packets without frames (undecodable data, a frozen encoder) are a stall too.
        age = time.monotonic() - self._last_frame
        if age > self._config.stall_timeout:
            raise StreamStalled(f"{self._config.safe_url}: no frame for {age:.1f} s")
