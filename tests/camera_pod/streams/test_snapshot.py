"""HTTP snapshot cameras against a real local HTTP server."""

from __future__ import annotations

import itertools
import logging
import statistics
import time
from collections.abc import Iterator

import pytest

from camera_pod.streams.config import StreamConfig
from camera_pod.streams.hub import StreamHub
from camera_pod.streams.state import StreamState
from tests.camera_pod.streams.test_rtsp import wait_for
from tests.support import snapshot_server
from tests.support.snapshot_server import PASSWORD, USER, SnapshotCamera

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def camera() -> Iterator[SnapshotCamera]:
    camera = SnapshotCamera()
    server = snapshot_server.start(camera)
    yield camera
    server.shutdown()
    server.server_close()


def snapshot(url: str, interval_ms: int = 200, **overrides: object) -> StreamConfig:
    settings: dict[str, object] = {"url": url, "kind": "snapshot", "snapshot_interval_ms": interval_ms,
                                   "read_timeout_s": 1.0, "open_timeout_s": 1.0, "reconnect_interval_sec": 1.0}
    return StreamConfig(**(settings | overrides))  # type: ignore[arg-type]


def test_open_endpoint_on_a_drift_free_schedule(hub: StreamHub, camera: SnapshotCamera) -> None:
    subscription = hub.subscribe("d;c", snapshot(camera.url("/open"), interval_ms=200))
    frame = subscription.next_frame(5)
    assert frame is not None and frame.frame.image.shape == (240, 320, 3)
    time.sleep(3)
    times = camera.times("/open")
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert abs(statistics.mean(gaps) - 0.2) < 0.02, gaps
    assert (times[-1] - times[0]) / (len(times) - 1) == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize(("path", "scheme"), [("/digest", "Digest"), ("/basic", "Basic")])
def test_credentials_from_the_url(hub: StreamHub, camera: SnapshotCamera, path: str, scheme: str) -> None:
    subscription = hub.subscribe("d;c", snapshot(camera.url(path, USER, PASSWORD)))
    assert subscription.next_frame(5) is not None
    assert subscription.status().online
    assert scheme in camera.schemes(path)
    if scheme == "Digest":
        assert "Basic" not in camera.schemes(path), "a Digest camera must never see the password in Basic"


def test_wrong_credentials_are_a_clear_error_without_a_tight_loop(hub: StreamHub, camera: SnapshotCamera) -> None:
    subscription = hub.subscribe("d;c", snapshot(camera.url("/digest", USER, "wrong"), interval_ms=50,
                                                 reconnect_interval_sec=1.0))
    time.sleep(3)
    status = subscription.status()
    assert status.state in (StreamState.BACKING_OFF, StreamState.CONNECTING)
    assert "HTTP 401: credentials missing or refused" in (status.last_error or "")
    assert len(camera.times("/digest")) <= 12  # ~2 requests per attempt, one attempt per second at most


@pytest.mark.parametrize(("path", "problem"), [
    ("/login-page", "not a decodable image"), ("/truncated", "not a decodable image"), ("/empty", "empty body"),
    ("/huge", "more than the limit"),
])
def test_bad_bodies_are_counted_not_fatal(hub: StreamHub, camera: SnapshotCamera, path: str, problem: str) -> None:
    subscription = hub.subscribe("d;c", snapshot(camera.url(path), interval_ms=100))
    wait_for(lambda: subscription.status().decode_errors >= 3, 10)
    status = subscription.status()
    assert problem in (status.last_error or "")
    assert status.state is not StreamState.FAILED
    assert subscription.next_frame(0.1) is None


def test_slow_camera_times_out_and_recovers(hub: StreamHub, camera: SnapshotCamera) -> None:
    camera.slow_seconds = 3.0
    subscription = hub.subscribe("d;c", snapshot(camera.url("/slow"), read_timeout_s=0.5))
    wait_for(lambda: subscription.status().reconnects >= 1, 5)
    assert "ReadTimeout" in (subscription.status().last_error or "")
    camera.slow_seconds = 0.0
    assert subscription.next_frame(10) is not None


def test_password_never_in_logs_or_state(hub: StreamHub, camera: SnapshotCamera,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    subscription = hub.subscribe("d;c", snapshot(camera.url("/basic", USER, "Wr0ng-Secret"), interval_ms=100))
    wait_for(lambda: subscription.status().reconnects >= 1, 5)
    rendered = repr(subscription.status()) + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert f"{USER}:***@" in rendered
    assert "Wr0ng-Secret" not in rendered
