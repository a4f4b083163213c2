"""Camera faults under the full stack: ``detector run`` + camera pods + a backend, real cameras and services.

The single-reader versions of these faults are in tests/camera_pod/streams/; here the question is whether
the whole worker stays healthy: the right stateReport, detections that resume, the other camera unharmed,
no pod restarted, nothing left behind.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.support import embedded
from tests.support.embedded import VISITS, Backend, Worker
from tests.support.embedded_fixtures import Connect
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera, VideoFault

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
RTSP_CAMERA = "display-fault-1;cam-101"
SNAPSHOT_CAMERA = "display-fault-2;cam-102"
DISPLAYS = ("display-fault-1", "display-fault-2")
# The pod's stream settings (camera_pod.streams.config) for what the broker sends by default: a stall is
# declared after max(5 s, 3 frame intervals); reconnects back off 0.5 s, 1 s, 2 s, ... (full jitter).
STALL_TIMEOUT_S = 5.0


@pytest.fixture(autouse=True)
def clean_outputs() -> None:
    embedded.clean_outputs(DISPLAYS)


def rtsp_subscription(rtsp: RtspServer, model_url: str) -> dict[str, Any]:
    return {"subscriptionIdentifier": RTSP_CAMERA, "rtspUrl": rtsp.url, "modelUrl": model_url, "modelId": 43,
            "modelName": "gas-station", "cropX1": 40, "cropY1": 30, "cropX2": 620, "cropY2": 460}


def snapshot_subscription(snapshots: SnapshotCamera, model_url: str) -> dict[str, Any]:
    return {"subscriptionIdentifier": SNAPSHOT_CAMERA, "snapshotUrl": snapshots.url("/video"),
            "snapshotInterval": 500, "modelUrl": model_url, "modelId": 44, "modelName": "gas-station"}


async def subscribe(worker: Worker, connect: Connect, *subscriptions: dict[str, Any]) -> Backend:
    backend = await connect(worker.url)
    await backend.send({"type": "setSubscriptionList", "subscriptions": list(subscriptions)})
    expected = {s["subscriptionIdentifier"]: True for s in subscriptions}
    await backend.until(lambda: backend.online() == expected, 60)
    assert len(worker.pods()) == len(subscriptions)
    return backend


def reports_since(backend: Backend, since: float) -> list[dict[str, bool]]:
    return [{c["subscriptionIdentifier"]: c["online"] for c in report["cameraConnections"]}
            for report in backend.of_type("stateReport", since)]


def largest_gap(backend: Backend, kind: str, since: float) -> float:
    times = [at for message, at in zip(backend.received, backend.arrived, strict=True)
             if message.get("type") == kind and at >= since]
    return max(later - earlier for earlier, later in itertools.pairwise(times))


async def assert_stored(backend: Backend, camera: str) -> None:
    """Every vehicle announced so far was also written to PostgreSQL (through the pod's action outbox)."""
    announced = embedded.vehicles(backend.detections(camera))
    display = camera.split(";")[0]
    await backend.until(lambda: len(embedded.stored_vehicles(display)) >= len(announced), 10)
    assert embedded.stored_vehicles(display)[: len(announced)] == announced


def assert_in_video_order(seen: list[tuple[str, str]]) -> None:
    """Consecutive visits of the looping video: each vehicle is the one after the previous one."""
    assert seen and seen[0] in VISITS, seen
    start = VISITS.index(seen[0])
    assert seen == [VISITS[(start + i) % len(VISITS)] for i in range(len(seen))], seen


async def test_rtsp_server_restart_is_handled_inside_the_pod_and_spares_the_other_camera(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect) -> None:
    rtsp, snapshots = camera_servers
    backend = await subscribe(worker, connect, rtsp_subscription(rtsp, model_url),
                              snapshot_subscription(snapshots, model_url))
    pods = {pod.pid for pod in worker.pods()}
    await backend.until(lambda: backend.detections(RTSP_CAMERA), 60)

    rtsp.stop()
    down_at = time.monotonic()
    await backend.until(lambda: backend.online().get(RTSP_CAMERA) is False, STALL_TIMEOUT_S + 3)
    await asyncio.sleep(max(0.0, down_at + 8 - time.monotonic()))
    assert backend.online() == {RTSP_CAMERA: False, SNAPSHOT_CAMERA: True}
    rtsp.start()  # the same port: the camera came back
    up_at = time.monotonic()
    # The backoff reached 4-8 s while the server was down; the next attempt comes at most ~16 s later.
    await backend.until(lambda: backend.online().get(RTSP_CAMERA) is True, 30)
    back_at = time.monotonic()

    during = reports_since(backend, down_at + 1)
    assert all(report[SNAPSHOT_CAMERA] for report in during), "the RTSP outage took the snapshot camera offline"
    outage = len(backend.detections(SNAPSHOT_CAMERA, down_at)) - len(backend.detections(SNAPSHOT_CAMERA, back_at))
    assert outage >= 1, "no snapshot detection during the RTSP outage"
    # The restarted server plays the video from its start: the first two visits, announced once each.
    await backend.until(lambda: len(backend.detections(RTSP_CAMERA, up_at)) >= 2, 40)
    assert embedded.vehicles(backend.detections(RTSP_CAMERA, up_at))[:2] == list(VISITS[:2])
    await assert_stored(backend, RTSP_CAMERA)
    await assert_stored(backend, SNAPSHOT_CAMERA)
    assert largest_gap(backend, "stateReport", down_at) < 3, "heartbeats stopped during the outage"
    assert {pod.pid for pod in worker.pods()} == pods, "a camera outage restarted a pod"
    assert worker.orphans() == []
    assert "stream down, reconnecting" in worker.log.read_text()


async def test_a_frozen_rtsp_server_is_a_stall_the_pod_recovers_from(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect) -> None:
    rtsp, _ = camera_servers
    backend = await subscribe(worker, connect, rtsp_subscription(rtsp, model_url))
    (pod,) = worker.pods()
    await backend.until(lambda: backend.detections(RTSP_CAMERA), 60)

    os.kill(rtsp.pid, signal.SIGSTOP)  # the TCP connection stays open, nothing arrives: only a watchdog sees it
    stopped_at = time.monotonic()
    try:
        await backend.until(lambda: backend.online().get(RTSP_CAMERA) is False, STALL_TIMEOUT_S + 3)
        offline_after = time.monotonic() - stopped_at
        async with httpx.AsyncClient(timeout=5) as http:  # the pod still answers: its last frame
            image = await http.get(f"http://127.0.0.1:{worker.port}/camera/{RTSP_CAMERA.replace(';', '%3B')}/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        await asyncio.sleep(max(0.0, stopped_at + 2 * STALL_TIMEOUT_S - time.monotonic()))
        assert backend.online() == {RTSP_CAMERA: False}
    finally:
        os.kill(rtsp.pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    await backend.until(lambda: backend.online().get(RTSP_CAMERA) is True, 30)
    await backend.until(lambda: backend.detections(RTSP_CAMERA, resumed_at), 40)

    assert offline_after >= STALL_TIMEOUT_S - 1, "offline before the stall timeout"
    assert_in_video_order(embedded.vehicles(backend.detections(RTSP_CAMERA, resumed_at)))
    await assert_stored(backend, RTSP_CAMERA)
    assert largest_gap(backend, "stateReport", stopped_at) < 3, "heartbeats stopped during the stall"
    assert [p.pid for p in worker.pods()] == [pod.pid], "a stall restarted the pod"
    assert worker.orphans() == []


@pytest.mark.parametrize("fault", ["error", "hang"])
async def test_a_failing_snapshot_camera_goes_offline_and_comes_back(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect, fault: VideoFault) -> None:
    _, snapshots = camera_servers
    backend = await subscribe(worker, connect, snapshot_subscription(snapshots, model_url))
    (pod,) = worker.pods()
    await backend.until(lambda: backend.detections(SNAPSHOT_CAMERA), 60)

    snapshots.fault = fault
    failed_at = time.monotonic()
    # An error is seen at once; a hung request only after the pod's read timeout (10 s).
    await backend.until(lambda: backend.online().get(SNAPSHOT_CAMERA) is False, 15)
    await asyncio.sleep(max(0.0, failed_at + 12 - time.monotonic()))
    assert backend.online() == {SNAPSHOT_CAMERA: False}
    requests_while_failing = len(snapshots.times("/video"))
    snapshots.fault = "none"
    fixed_at = time.monotonic()
    await backend.until(lambda: backend.online().get(SNAPSHOT_CAMERA) is True, 30)
    await backend.until(lambda: backend.detections(SNAPSHOT_CAMERA, fixed_at), 40)

    assert_in_video_order(embedded.vehicles(backend.detections(SNAPSHOT_CAMERA, fixed_at)))
    await assert_stored(backend, SNAPSHOT_CAMERA)
    assert largest_gap(backend, "stateReport", failed_at) < 3, "heartbeats stopped while the camera failed"
    assert len(snapshots.times("/video")) > requests_while_failing
    assert [p.pid for p in worker.pods()] == [pod.pid], "a failing camera restarted the pod"
    assert worker.orphans() == []
