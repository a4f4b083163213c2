"""The embedded worker as a user runs it: ``detector run`` + a backend WebSocket client, real everything."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import psycopg
import pytest
import redis

from tests.conftest import POSTGRES_DSN, REDIS_URL
from tests.support import embedded
from tests.support.embedded import VISITS, Worker
from tests.support.embedded_fixtures import ready_worker
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
DISPLAYS = ("display-e2e-1", "display-e2e-2")
TOKEN = "e2e-token-0123456789abcdef"


@pytest.fixture
def secured_worker(tmp_path: Path) -> Iterator[Worker]:
    with ready_worker(tmp_path, token=TOKEN) as running:
        yield running


@pytest.fixture
def clean_outputs() -> None:
    embedded.clean_outputs(DISPLAYS)


def subscriptions(rtsp: RtspServer, snapshots: SnapshotCamera, model_url: str) -> list[dict[str, Any]]:
    common = {"modelUrl": model_url, "modelId": 42, "modelName": "gas-station"}
    return [
        {"subscriptionIdentifier": f"{DISPLAYS[0]};cam-001", "rtspUrl": rtsp.url, **common,
         "cropX1": 100, "cropY1": 80, "cropX2": 560, "cropY2": 400},
        {"subscriptionIdentifier": f"{DISPLAYS[1]};cam-001", "rtspUrl": rtsp.url, **common,
         "cropX1": 40, "cropY1": 30, "cropX2": 620, "cropY2": 460},
        {"subscriptionIdentifier": "display-e2e-3;cam-002", "snapshotUrl": snapshots.url("/open"),
         "snapshotInterval": 500, **common},
    ]


async def test_full_flow(worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
                         connect: Any, clean_outputs: None) -> None:
    rtsp, snapshots = camera_servers
    started = time.monotonic()
    backend = await connect(worker.url)
    await backend.until(lambda: backend.of_type("stateReport"), 2)
    assert time.monotonic() - started < 2

    await backend.send({"type": "setSubscriptionList", "subscriptions": subscriptions(rtsp, snapshots, model_url)})
    await backend.until(lambda: len(backend.online()) == 3 and all(backend.online().values()), 60)
    assert len(worker.pods()) == 2, "one pod per camera stream"
    assert rtsp.clients == 1, "two displays of one camera share one RTSP connection"

    def detections(display: str) -> list[dict[str, Any]]:
        return backend.detections(display)

    await backend.until(lambda: len(detections(DISPLAYS[0])) >= 1, 60)
    await backend.send({"type": "setSessionId", "payload": {"displayIdentifier": DISPLAYS[0], "sessionId": 777}})
    await backend.until(lambda: all(len(detections(d)) >= len(VISITS) for d in DISPLAYS), 90)

    for display in DISPLAYS:
        seen = embedded.vehicles(detections(display))[: len(VISITS)]
        assert seen == list(VISITS), f"{display}: one imageDetection per visit, in order"
        assert all(m["data"]["modelId"] == 42 for m in detections(display))
    assert detections(DISPLAYS[0])[0].get("sessionId") is None
    assert detections(DISPLAYS[0])[1]["sessionId"] == 777
    assert detections(DISPLAYS[1])[1].get("sessionId") is None

    client = redis.Redis.from_url(REDIS_URL)

    def rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(POSTGRES_DSN) as connection:
            return [tuple(row) for row in connection.execute(
                "SELECT car_brand, car_body_type FROM gas_station_1.car_frontal_info "
                "WHERE display_id = %s ORDER BY created_at", (DISPLAYS[0],)).fetchall()]

    # The pods' writes go through their durable action outbox: applied moments after the event, not before it.
    await backend.until(lambda: len(list(client.scan_iter(f"inference:{DISPLAYS[0]}:*"))) >= len(VISITS), 10)
    await backend.until(lambda: len(rows()) >= len(VISITS), 10)
    assert rows()[: len(VISITS)] == list(VISITS)

    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{worker.port}/camera/{DISPLAYS[0]}%3Bcam-001/image")
        missing = await http.get(f"http://127.0.0.1:{worker.port}/camera/nobody%3Bcam-9/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3), "the full, uncropped frame"
    assert missing.status_code == 404

    pods_before = {p.pid for p in worker.pods()}
    await backend.socket.close()
    backend = await connect(worker.url)
    await backend.until(lambda: len(backend.online()) == 3, 5)
    assert {p.pid for p in worker.pods()} == pods_before, "a reconnect within the grace period restarts nothing"

    await backend.send({"type": "setSubscriptionList", "subscriptions":
                        subscriptions(rtsp, snapshots, model_url)[2:]})
    await backend.until(lambda: set(backend.online()) == {"display-e2e-3;cam-002"}, 15)
    await backend.until(lambda: len(worker.pods()) == 1, 15)
    assert {p.pid for p in worker.pods()} < pods_before, "only the RTSP camera's pod stopped, no new pod"


HOSTILE: list[str] = [
    "{not json", "[]", "null", "42", '"string"', "{}", '{"type": null}', '{"type": 7}', '{"type": "noSuchType"}',
    '{"type": "setSubscriptionList"}', '{"type": "setSubscriptionList", "subscriptions": {}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "nosemicolon", "rtspUrl": "rtsp://a/b",'
    ' "modelUrl": "x", "modelId": 1, "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b;c", "rtspUrl": "rtsp://a/b",'
    ' "modelUrl": "x", "modelId": 1, "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b", "modelUrl": "x", "modelId": 1,'
    ' "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b", "rtspUrl": "rtsp://a/b",'
    ' "snapshotUrl": "http://a/b", "snapshotInterval": 100, "modelUrl": "x", "modelId": 1, "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b", "rtspUrl": "rtsp://a/b",'
    ' "cropX1": 1, "modelUrl": "x", "modelId": 1, "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b", "rtspUrl": "file:///etc/passwd",'
    ' "modelUrl": "x", "modelId": 1, "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b", "rtspUrl": "rtsp://a/b",'
    ' "modelUrl": "x", "modelId": "one", "modelName": "m"}}',
    '{"type": "subscribe", "payload": {"subscriptionIdentifier": "a;b", "rtspUrl": "rtsp://a/b",'
    ' "modelUrl": "x", "modelId": -3, "modelName": "m"}}',
    '{"type": "subscribe"}', '{"type": "subscribe", "payload": []}', '{"type": "unsubscribe", "payload": {}}',
    '{"type": "unsubscribe", "payload": {"subscriptionIdentifier": ";"}}',
    '{"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": "x"}}',
    '{"type": "setSessionId", "payload": {"sessionId": 1}}',
    '{"type": "setProgressionStage", "payload": {"displayIdentifier": "d", "progressionStage": "flying"}}',
    '{"type": "patchSessionResult", "payload": {"sessionId": "a", "success": "maybe"}}',
    '{"type": "requestState", "payload": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"type": "setSubscriptionList", "subscriptions": [], "padding": "' + "x" * (10 << 20) + '"}',
    "\u0000\u0001\u0002",
]


def with_bad_entries(good: list[dict[str, Any]]) -> list[str]:
    """Subscription lists whose bad entries are refused one by one: the good ones are what runs."""
    return [json.dumps({"type": "setSubscriptionList", "subscriptions": [*good, 1]}),
            json.dumps({"type": "setSubscriptionList", "subscriptions": [*good, *[{}] * 100]}),
            json.dumps({"type": "setSubscriptionList", "subscriptions": [{"subscriptionIdentifier": "x;y"}, *good]})]


async def test_malformed_messages_are_logged_and_change_nothing(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str, connect: Any) -> None:
    rtsp, snapshots = camera_servers
    assert len(HOSTILE) >= 30
    backend = await connect(worker.url)
    snapshot_only = subscriptions(rtsp, snapshots, model_url)[2:]
    await backend.send({"type": "setSubscriptionList", "subscriptions": snapshot_only})
    await backend.until(lambda: backend.online() == {"display-e2e-3;cam-002": True}, 60)
    pods = {p.pid for p in worker.pods()}
    requests_before = len(snapshots.times("/open"))
    for raw in [*HOSTILE, *with_bad_entries(snapshot_only)]:
        await backend.socket.send(raw)
    heartbeats = len(backend.of_type("stateReport"))
    await asyncio.sleep(3)
    assert len(backend.of_type("stateReport")) >= heartbeats + 2, "heartbeats stopped"
    assert backend.online() == {"display-e2e-3;cam-002": True}, "a bad message changed the subscriptions"
    assert {p.pid for p in worker.pods()} == pods, "a bad message restarted a camera"
    assert len(snapshots.times("/open")) > requests_before, "the camera stopped working"
    log = worker.log.read_text()
    refused_whole = log.count("invalid backend message; ignored") + log.count("backend message too large")
    assert refused_whole + log.count("subscription entry refused") >= len(HOSTILE) + 102


async def test_protocol_test_passes_against_detector_run(worker: Worker,
                                                         camera_servers: tuple[RtspServer, SnapshotCamera],
                                                         fixture_mpta: Path) -> None:
    rtsp, _ = camera_servers
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-P", "-m", "detector.cli", "protocol-test", "--url", worker.url,
                         "--model-url", str(fixture_mpta), "--rtsp-url", rtsp.url, "--timeout", "60"],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS") == 7 and "FAIL" not in result.stdout


def protocol_test(url: str, rtsp_url: str, mpta: Path, token: str | None,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DETECTOR_AUTH_TOKEN"}
    if token:
        environment["DETECTOR_AUTH_TOKEN"] = token  # the variable, not --token: a command line is public
    return subprocess.run([sys.executable, "-P", "-m", "detector.cli", "protocol-test", "--url", url,
                           "--model-url", str(mpta), "--rtsp-url", rtsp_url, "--timeout", str(timeout)],
                          capture_output=True, text=True, timeout=180, env=environment)


async def test_a_worker_with_a_token_refuses_strangers_and_its_pods_authenticate(
        secured_worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], fixture_mpta: Path) -> None:
    rtsp, _ = camera_servers
    stranger = await asyncio.to_thread(protocol_test, secured_worker.url, rtsp.url, fixture_mpta, None, 5)
    assert stranger.returncode == 1 and "1008" in stranger.stdout and "PASS" not in stranger.stdout
    async with httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{secured_worker.port}"
        assert (await http.get(f"{base}/healthz")).status_code == 200, "probes need no token"
        image = await http.get(f"{base}/camera/a%3Bb/image")
        assert image.status_code == 401 and image.headers["www-authenticate"].startswith("Bearer")
    # The camera goes online only if its pod, a child process, presented the token on /internal/pods/.
    result = await asyncio.to_thread(protocol_test, secured_worker.url, rtsp.url, fixture_mpta, TOKEN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS") == 7 and "FAIL" not in result.stdout
    log = secured_worker.log.read_text()
    assert "refused an unauthenticated request" in log and TOKEN not in log


async def test_a_camera_with_a_broken_model_is_offline_and_harms_no_other(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str, connect: Any) -> None:
    rtsp, snapshots = camera_servers
    good = subscriptions(rtsp, snapshots, model_url)[2]
    broken = model_url.rsplit("/", 1)[0] + "/broken.mpta"
    bad = {**good, "subscriptionIdentifier": "display-bad;cam-003", "modelUrl": broken,
           "snapshotUrl": snapshots.url("/open") + "?other", "snapshotInterval": 700}
    backend = await connect(worker.url)
    await backend.send({"type": "setSubscriptionList", "subscriptions": [good, bad]})
    await backend.until(lambda: backend.online().get("display-e2e-3;cam-002") is True, 60)
    await asyncio.sleep(3)
    assert backend.online() == {"display-e2e-3;cam-002": True, "display-bad;cam-003": False}
    assert "not a readable zip" in worker.log.read_text()


async def test_a_killed_pod_is_restarted_and_a_new_backend_replaces_the_old(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str, connect: Any) -> None:
    rtsp, snapshots = camera_servers
    first = await connect(worker.url)
    await first.send({"type": "setSubscriptionList", "subscriptions": subscriptions(rtsp, snapshots, model_url)[2:]})
    await first.until(lambda: first.online() == {"display-e2e-3;cam-002": True}, 60)
    (pod,) = worker.pods()
    pod.kill()
    await first.until(lambda: first.online() == {"display-e2e-3;cam-002": False}, 10)
    await first.until(lambda: [p.pid for p in worker.pods()] not in ([], [pod.pid]), 15)
    await first.until(lambda: first.online() == {"display-e2e-3;cam-002": True}, 60)

    second = await connect(worker.url)
    await second.until(lambda: second.online() == {"display-e2e-3;cam-002": True}, 5)
    await first.until(lambda: first.closed_by is not None, 5)
    assert first.closed_by is not None and first.closed_by.rcvd is not None
    assert first.closed_by.rcvd.code == 1012, "the worker closes the replaced connection (service restart)"
    assert len(worker.pods()) == 1
