"""Stream decode cost: our RTSP reader vs. cv2.VideoCapture on the same stream, in the same run.

    .venv/bin/python -P bench/streams_bench.py [--seconds 8]

Serves a 640x480 and a 1920x1080 H.264 file over a real RTSP server (GStreamer, see
tests/support/rtsp_server.py) and reports process CPU seconds per decoded and per delivered frame.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Appended, not prepended: the repository root holds a package named `operator` that must not shadow the stdlib.
sys.path.append(str(Path(__file__).resolve().parents[1]))

import av
import cv2
import numpy as np

from camera_pod.streams.config import StreamConfig
from camera_pod.streams.hub import StreamHub
from tests.support.servers import RtspServer

FPS = 25


def make_video(path: Path, width: int, height: int, seconds: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "g": str(FPS * 2)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        base = np.indices((height, width)).sum(axis=0).astype(np.uint8)
        for index in range(seconds * FPS):
            shift = np.uint8(index % 256)
            image = np.ascontiguousarray(np.dstack([base + shift, base // 2 + shift, 255 - base]))
            cv2.putText(image, str(index), (40, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 4, (255, 255, 255), 8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def ours(url: str, seconds: float, target_fps: float | None) -> tuple[int, int, float]:
    hub = StreamHub()
    subscription = hub.subscribe("bench;cam", StreamConfig(url=url, kind="rtsp", target_fps=target_fps))
    if subscription.next_frame(15) is None:
        raise RuntimeError("no frame from our reader")
    start_cpu, start_decoded, delivered = cpu(), subscription.status().decoded, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subscription.next_frame(1) is not None:
            delivered += 1
    used = cpu() - start_cpu
    decoded = subscription.status().decoded - start_decoded
    hub.close()
    return decoded, delivered, used


def opencv(url: str, seconds: float) -> tuple[int, int, float]:
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    if not capture.read()[0]:
        raise RuntimeError("no frame from cv2.VideoCapture")
    start_cpu, frames = cpu(), 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok, _ = capture.read()
        frames += ok
    used = cpu() - start_cpu
    capture.release()
    return frames, frames, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for width, height in ((640, 480), (1920, 1080)):
            video = make_video(Path(scratch) / f"{height}p.mp4", width, height, seconds=int(args.seconds * 3) + 10)
            server = RtspServer(video).start()
            try:
                base = opencv(server.url, args.seconds)
                full = ours(server.url, args.seconds, None)
                paced = ours(server.url, args.seconds, 5.0)
            finally:
                server.stop()
            for name, (decoded, delivered, used) in (("cv2.VideoCapture", base), ("ours", full),
                                                     ("ours, target_fps=5", paced)):
                rows.append((f"{width}x{height}", name, decoded, delivered, used / max(decoded, 1) * 1000,
                             used / max(delivered, 1) * 1000, used / max(base[2], 1e-9)))
    print(f"{'stream':10} {'reader':20} {'decoded':>8} {'delivered':>9} {'CPU ms/decoded':>15} "
          f"{'CPU ms/delivered':>17} {'CPU vs cv2':>10}")
    for stream, name, decoded, delivered, per_decoded, per_delivered, ratio in rows:
        print(f"{stream:10} {name:20} {decoded:8d} {delivered:9d} {per_decoded:15.2f} {per_delivered:17.2f} "
              f"{ratio:10.2f}")


if __name__ == "__main__":
    main()
