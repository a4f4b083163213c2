"""The soak's cameras: RTSP servers and an HTTP snapshot camera that both play the fixture video on a loop.

RTSP: one GStreamer server (tests/support/rtsp_server.py) per camera, each on its own port so each camera is its
own stream URL (one camera pod each); the server plays a file once, so the fixture video is remuxed (H.264
copied, no re-encode) into one file long enough for the whole run. Snapshots: one HTTP server, a path per
camera (``/cam/<n>``); each answers with the video frame that wall-clock time points at (10 fps, looped, every
camera at its own phase), from JPEGs encoded once up front.
"""

from __future__ import annotations

import contextlib
import http.server
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2

from tests.support.servers import RtspServer

VIDEO_SECONDS = 27.0  # tests/fixtures/media/cars.mp4: 270 frames at 10 fps


def loop_video(source: Path, target: Path, seconds: float) -> Path:
    """``source`` repeated (packets copied, timestamps shifted) until it lasts at least ``seconds``."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        output = writer.add_stream_from_template(stream)
        offset = 0
        for _ in range(max(1, math.ceil(seconds / VIDEO_SECONDS))):
            reader.seek(0)
            end = offset
            for packet in reader.demux(stream):
                if packet.dts is None or packet.pts is None:  # the demuxer's flush packet
                    continue
                packet.pts += offset
                packet.dts += offset
                end = max(end, packet.pts + (packet.duration or 0))
                packet.stream = output
                writer.mux(packet)
            offset = end
    return target


def video_jpegs(source: Path, quality: int = 90) -> list[bytes]:
    with av.open(str(source)) as reader:
        frames = [frame.to_ndarray(format="bgr24") for frame in reader.decode(video=0)]
    return [bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()) for image in frames]


@dataclass
class VideoSnapshots:
    """Shared state of the snapshot server: the frames, the clock, and the requests served per path."""

    jpegs: list[bytes]
    cameras: int
    fps: float = 10.0
    started: float = field(default_factory=time.monotonic)
    requests: Counter[str] = field(default_factory=Counter)

    def frame(self, camera: int) -> bytes:
        phase = camera * len(self.jpegs) // max(1, self.cameras)
        index = int((time.monotonic() - self.started) * self.fps) + phase
        return self.jpegs[index % len(self.jpegs)]


def _handler(snapshots: VideoSnapshots) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            _, prefix, number = self.path.partition("/cam/")
            if prefix and number.isdigit() and int(number) < snapshots.cameras:
                snapshots.requests[self.path] += 1
                body, status = snapshots.frame(int(number)), 200
            else:
                body, status = b"no such camera", 404
            self.send_response(status)
            self.send_header("Content-Type", "image/jpeg" if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)

    return Handler


@dataclass
class CameraSet:
    """``rtsp`` RTSP cameras and ``snapshot`` snapshot cameras; ``urls()`` gives (kind, url) per camera."""

    video: Path
    workdir: Path
    rtsp: int
    snapshot: int
    seconds: float
    servers: list[RtspServer] = field(default_factory=list)
    snapshots: VideoSnapshots | None = None
    _http: http.server.ThreadingHTTPServer | None = None
    _running: bool = False

    def start(self) -> CameraSet:
        if self.rtsp:
            long_video = loop_video(self.video, self.workdir / "soak-video.mp4", self.seconds)
            for _ in range(self.rtsp):
                self.servers.append(RtspServer(long_video).start())
        if self.snapshot:
            self.snapshots = VideoSnapshots(video_jpegs(self.video), self.snapshot)
            self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.snapshots))
            self._http.daemon_threads = True
            threading.Thread(target=self._http.serve_forever, name="soak-snapshots", daemon=True).start()
        self._running = True
        return self

    def urls(self) -> list[tuple[str, str]]:
        cameras = [("rtsp", server.url) for server in self.servers]
        if self._http is not None:
            port = self._http.server_address[1]
            cameras += [("snapshot", f"http://127.0.0.1:{port}/cam/{n}") for n in range(self.snapshot)]
        return cameras

    def pids(self) -> list[int]:
        """The RTSP server processes (the harness's own CPU), while they run."""
        return [server.pid for server in self.servers] if self._running else []

    def stop(self) -> None:
        """Idempotent. Afterwards no camera sends a frame (the soak's quiet period before the final count)."""
        self._running = False
        for server in self.servers:
            server.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
