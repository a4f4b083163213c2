"""A real HTTP snapshot camera for tests: Digest-only, Basic-only and open endpoints, a video, plus faults."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np

USER, PASSWORD, REALM = "camera", "Sn4p-Secret!", "ipcam"
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def jpeg(width: int = 320, height: int = 240, value: int = 0) -> bytes:
    image = np.full((height, width, 3), value % 256, np.uint8)
    cv2.putText(image, str(value), (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return bytes(cv2.imencode(".jpg", image)[1].tobytes())


def video_jpegs(video: Path, step: int) -> list[bytes]:
    """Every ``step``-th frame of ``video`` as a JPEG."""
    with av.open(str(video)) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    return [bytes(cv2.imencode(".jpg", image)[1].tobytes()) for image in frames[::step]]


VideoFault = Literal["none", "error", "hang"]


@dataclass
class SnapshotCamera:
    """Shared state the handler reads and the test inspects."""

    requests: list[tuple[float, str, str]] = field(default_factory=list)  # (time, path, auth scheme)
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    slow_seconds: float = 3.0
    counter: int = 0
    port: int = 0
    # /video: each answered request shows the frame ``video_step`` frames after the last one, looping; at 10 fps
    # and a 500 ms snapshot interval the default step plays the video in real time.
    video: Path | None = None
    video_step: int = 5
    video_served: int = 0
    # /video only: "error" answers 503; "hang" accepts the request and sends nothing while the fault lasts.
    fault: VideoFault = "none"
    hang_limit_s: float = 60.0
    _video_frames: list[bytes] | None = None
    _video_lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, user: str = "", password: str = "") -> str:
        userinfo = f"{user}:{password}@" if user else ""
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def times(self, path: str) -> list[float]:
        return [when for when, requested, _ in self.requests if requested == path]

    def schemes(self, path: str) -> set[str]:
        return {scheme for _, requested, scheme in self.requests if requested == path}

    def next_video_frame(self) -> bytes:
        assert self.video is not None, "SnapshotCamera(video=...) serves /video"
        with self._video_lock:
            if self._video_frames is None:
                self._video_frames = video_jpegs(self.video, self.video_step)
            frame = self._video_frames[self.video_served % len(self._video_frames)]
            self.video_served += 1
            return frame


def _digest_ok(header: str, camera: SnapshotCamera, method: str) -> bool:
    params = {match.group(1): match.group(2) or match.group(3) for match in _PARAM.finditer(header[7:])}
    if params.get("username") != USER or params.get("nonce") != camera.nonce:
        return False
    ha1 = _md5(f"{USER}:{REALM}:{PASSWORD}")
    ha2 = _md5(f"{method}:{params.get('uri')}")
    expected = _md5(f"{ha1}:{camera.nonce}:{params.get('nc')}:{params.get('cnonce')}:{params.get('qop')}:{ha2}")
    return secrets.compare_digest(expected, params.get("response", ""))


def _basic_ok(header: str) -> bool:
    try:
        return base64.b64decode(header[6:]).decode() == f"{USER}:{PASSWORD}"
    except ValueError:
        return False


def make_handler(camera: SnapshotCamera) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization", "")
            camera.requests.append((time.monotonic(), self.path, authorization.split(" ")[0]))
            route = getattr(self, f"route_{self.path.strip('/').replace('-', '_')}", None)
            if route is None:
                self.reply(404, b"no such endpoint", "text/plain")
            else:
                route(authorization)

        def reply(self, status: int, body: bytes, content_type: str = "image/jpeg",
                  headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def snapshot(self) -> None:
            camera.counter += 1
            self.reply(200, jpeg(value=camera.counter))

        def route_open(self, _: str) -> None:
            self.snapshot()

        def route_digest(self, authorization: str) -> None:
            if authorization.startswith("Digest ") and _digest_ok(authorization, camera, "GET"):
                return self.snapshot()
            challenge = f'Digest realm="{REALM}", qop="auth", nonce="{camera.nonce}", algorithm=MD5'
            self.reply(401, b"", "text/plain", {"WWW-Authenticate": challenge})

        def route_basic(self, authorization: str) -> None:
            if authorization.startswith("Basic ") and _basic_ok(authorization):
                return self.snapshot()
            self.reply(401, b"", "text/plain", {"WWW-Authenticate": f'Basic realm="{REALM}"'})

        def route_login_page(self, _: str) -> None:
            self.reply(200, b"<html><body><form>Login</form></body></html>", "text/html")

        def route_truncated(self, _: str) -> None:
            self.reply(200, jpeg()[:200])

        def route_empty(self, _: str) -> None:
            self.reply(200, b"")

        def route_huge(self, _: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(50 << 20))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(bytes(1 << 20))

        def route_video(self, _: str) -> None:
            if camera.fault == "error":
                return self.reply(503, b"camera busy", "text/plain")
            if camera.fault == "hang":
                deadline = time.monotonic() + camera.hang_limit_s
                while camera.fault == "hang" and time.monotonic() < deadline:
                    time.sleep(0.1)
            with contextlib.suppress(OSError):  # the client may have given up waiting
                self.reply(200, camera.next_video_frame())

        def route_slow(self, _: str) -> None:
            time.sleep(camera.slow_seconds)
            with contextlib.suppress(OSError):
                self.snapshot()

    return Handler


def start(camera: SnapshotCamera) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(camera))
    server.daemon_threads = True
    camera.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
