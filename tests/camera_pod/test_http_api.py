"""The camera pod's HTTP side: /image, /healthz, /metrics."""

from __future__ import annotations

import cv2
import numpy as np
from fastapi.testclient import TestClient

from camera_pod.http_api import build_app
from camera_pod.metrics import PodMetrics
from camera_pod.streams.frames import Frame
from detector.contract.pods import PodHealth, StreamReport


def test_image_health_and_metrics() -> None:
    frames: list[Frame] = []
    report = StreamReport(online=False, state="connecting", fps=0.0, last_frame_at=None, frames=0, reconnects=0,
                          last_error=None, http_port=8080)
    health = [PodHealth(ok=True, detail="starting", report=report)]
    metrics = PodMetrics()
    client = TestClient(build_app(lambda: frames[-1] if frames else None, lambda: health[-1], metrics.registry))

    assert client.get("/image").status_code == 404
    image = np.full((480, 640, 3), 120, np.uint8)
    frames.append(Frame(image, 1.0, 1))
    response = client.get("/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (480, 640, 3) and abs(int(decoded.mean()) - 120) <= 2

    assert client.get("/healthz").status_code == 200
    health.append(PodHealth(ok=False, detail="no frames for 30 s", report=report.model_copy(update={"fps": 1.5})))
    unhealthy = client.get("/healthz")
    assert unhealthy.status_code == 503 and unhealthy.json()["detail"] == "no frames for 30 s"
    assert PodHealth.model_validate(unhealthy.json()).report.fps == 1.5

    metrics.fps.set(9.5)
    metrics.events.labels("d;c", "visit").inc()
    text = client.get("/metrics").text
    assert "detector_stream_fps 9.5" in text
    assert 'detector_events_total{kind="visit",subscription="d;c"} 1.0' in text
