"""The pod's HTTP side: /image, /healthz, /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from camera_pod.streams.frames import Frame
from detector.contract.pods import PodHealth


def build_app(latest_frame: Callable[[], Frame | None], health: Callable[[], PodHealth],
              registry: CollectorRegistry) -> FastAPI:
    app = FastAPI(title="camera pod", docs_url=None, redoc_url=None)
    encoded: dict[int, bytes] = {}  # sequence -> JPEG of the latest frame only

    @app.get("/image")
    def image() -> Response:
        frame = latest_frame()
        if frame is None:
            return JSONResponse({"error": "no frame yet"}, status_code=404)
        if frame.sequence not in encoded:
            ok, buffer = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            if not ok:
                return JSONResponse({"error": "could not encode the frame"}, status_code=500)
            encoded.clear()
            encoded[frame.sequence] = buffer.tobytes()
        return Response(encoded[frame.sequence], media_type="image/jpeg",
                         headers={"X-Frame-Age-Seconds": f"{time.time() - frame.captured_at:.3f}"})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        current = health()
        return JSONResponse(current.model_dump(mode="json"), status_code=200 if current.ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
