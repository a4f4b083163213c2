"""The original's documents against a real ``detector run`` (one worker for the module, real cameras with
credentials, the fixture model over HTTP, a backend that schema-checks every message it receives).

Every backend message is the original's example (examples.py) or built to its schema; where an example's
URL points nowhere ("rtsp://...", "http://..."), only that URL is replaced by the test's own server: the
shape stays verbatim (both rtspUrl and snapshotUrl, snapshotInterval 5000, the four crops, modelId 101).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.conformance import examples
from tests.conformance.conftest import Connect, LogWatch
from tests.conformance.flow import (
    CROP_KEYS,
    detections_of,
    echo_mismatches,
    entries,
    in_use,
    listed,
    reset,
    session_ids,
)
from tests.conformance.validation import problems
from tests.support.credentialed_rtsp import CredentialedRtspServer
from tests.support.embedded import VISITS, Worker
from tests.support.snapshot_server import PASSWORD, USER, SnapshotCamera

pytestmark = [pytest.mark.timeout(300)]
EXAMPLE_ID = "display-001;cam-001"  # the identifier of every original example


def servers(rtsp: CredentialedRtspServer, snapshots: SnapshotCamera, model_url: str,
            snapshot_path: str = "/basic") -> dict[str, str]:
    """The test's servers for the examples' placeholder URLs, credentials in the URLs as a backend sends them."""
    return {"rtspUrl": rtsp.url, "snapshotUrl": snapshots.url(snapshot_path, USER, PASSWORD), "modelUrl": model_url}


async def settle_without_errors(log: LogWatch, what: str, seconds: float = 1.0) -> None:
    await asyncio.sleep(seconds)
    assert log.errors() == [], f"{what}: the worker logged {log.errors()[:3]}"


async def test_every_backend_example_of_the_original_is_accepted(
        shared_worker: Worker, rtsp_camera: CredentialedRtspServer, snapshot_camera: SnapshotCamera,
        shared_model_url: str, validated_connect: Connect, worker_log: LogWatch) -> None:
    """(a) Each backend->worker example sent verbatim (placeholder URLs replaced) is taken without an error."""
    urls = servers(rtsp_camera, snapshot_camera, shared_model_url)
    backend = await validated_connect(shared_worker.url)
    await reset(backend)

    subscribe = examples.with_servers(examples.CLAUDE_SUBSCRIBE.message, **urls)  # type: ignore[arg-type]
    assert problems(subscribe) == []
    worker_log.mark()
    await backend.send(subscribe)
    await backend.until(lambda: (entries(backend) or {}).get(EXAMPLE_ID, {}).get("online") is True, 60)
    assert log_free(worker_log, "CLAUDE.md subscribe")
    sent = subscribe["payload"]
    assert in_use(sent) == "snapshotUrl", "the original uses the snapshot when snapshotInterval is given"
    assert echo_mismatches(sent, entries(backend)[EXAMPLE_ID]) == []  # type: ignore[index]

    for example in examples.BACKEND_TO_WORKER:
        if example is examples.CLAUDE_SUBSCRIBE or example is examples.FLOW_5_UNSUBSCRIBE:
            continue
        message = example.message
        assert message is not None
        if example.placeholders:
            message = examples.with_servers(message, **urls)
        worker_log.mark()
        before = len(backend.of_type("stateReport"))
        await backend.send(message)
        await settle_without_errors(worker_log, example.name)
        assert len(backend.of_type("stateReport")) > before, f"after {example.name}: no heartbeat"
        assert EXAMPLE_ID in listed(backend), f"{example.name} dropped the subscription"

    worker_log.mark()
    await backend.send(examples.FLOW_5_UNSUBSCRIBE.message)  # type: ignore[arg-type]
    await backend.until(lambda: entries(backend) == {}, 15)
    await settle_without_errors(worker_log, examples.FLOW_5_UNSUBSCRIBE.name)


def log_free(log: LogWatch, what: str) -> bool:
    assert log.errors() == [], f"{what}: the worker logged {log.errors()[:3]}"
    return True


@pytest.mark.slow
async def test_the_original_typical_flow_message_by_message(
        shared_worker: Worker, rtsp_camera: CredentialedRtspServer, snapshot_camera: SnapshotCamera,
        shared_model_url: str, validated_connect: Connect) -> None:
    """(b) worker.md section 6, step by step; every worker message is schema-checked by the backend.

    The subscription is the CLAUDE.md example's shape (both URLs, crops, modelId 101) with the test's
    cameras; snapshotInterval is 500 instead of 5000 (the snapshot camera plays the fixture video one frame
    step per request: at 5000 ms a car would take a minute) and the crop frames the cars' lane.
    """
    started = time.monotonic()
    backend = await validated_connect(shared_worker.url)
    # 1. Connection Established & Heartbeat
    await backend.until(lambda: backend.of_type("stateReport"), 3)
    first = backend.of_type("stateReport")[0]
    assert {k: first[k] for k in examples.FLOW_1_STATE_REPORT.shown} == examples.FLOW_1_STATE_REPORT.shown
    assert backend.arrived[0] - started < 3, "heartbeats start at once"
    await reset(backend)

    # 2. Backend Subscribes Camera
    subscribe = examples.with_servers(examples.FLOW_2_SUBSCRIBE.message,  # type: ignore[arg-type]
                                      **servers(rtsp_camera, snapshot_camera, shared_model_url, "/video"))
    subscribe["payload"].update(snapshotInterval=500, cropX1=40, cropY1=30, cropX2=620, cropY2=460)
    await backend.send(subscribe)

    # 3. Worker Acknowledges in Heartbeat
    await backend.until(lambda: (entries(backend) or {}).get(EXAMPLE_ID, {}).get("online") is True, 60)
    assert echo_mismatches(subscribe["payload"], entries(backend)[EXAMPLE_ID]) == []  # type: ignore[index]

    # 4. Worker Detects a Car: no session yet, so no sessionId key at all
    await backend.until(lambda: detections_of(backend, EXAMPLE_ID), 90)
    detection = detections_of(backend, EXAMPLE_ID)[0]
    assert "sessionId" not in detection, f"sessionId must be left out (not null) without a session: {detection}"
    found = detection["data"]["detection"]
    assert (found["carBrand"], found["bodyType"]) in VISITS
    assert detection["data"]["modelId"] == 101 and detection["data"]["modelName"] == "Vehicle Detection"

    # worker.md section 7: GET /camera/display-001;cam-001/image -> the latest full frame as image/jpeg
    async with httpx.AsyncClient(timeout=10) as http:
        for path in (f"/camera/{EXAMPLE_ID}/image", "/camera/display-001%3Bcam-001/image"):
            response = await http.get(f"http://127.0.0.1:{shared_worker.port}{path}")
            assert response.status_code == 200 and response.headers["content-type"] == examples.HTTP_IMAGE_CONTENT_TYPE
            image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (480, 640, 3), "the full, uncropped frame"

    # Backend creates the session: setSessionId; the next detections carry the backend's integer
    set_at = time.monotonic()
    await backend.send(examples.SET_SESSION_ID.message)  # type: ignore[arg-type]
    before = detections_of(backend, EXAMPLE_ID)
    assert all("sessionId" not in m for m in before), session_ids(before)
    await backend.until(lambda: any("sessionId" in m for m in detections_of(backend, EXAMPLE_ID, set_at)), 90)
    with_session = [m for m in detections_of(backend, EXAMPLE_ID, set_at) if "sessionId" in m]
    assert with_session[0]["sessionId"] == 12345 and type(with_session[0]["sessionId"]) is int

    # Progression stages; any patchSession the worker sends is answered as the backend does
    for stage in examples.SET_PROGRESSION_STAGES[1:4]:
        await backend.send(stage.message)  # type: ignore[arg-type]
    for patch in backend.of_type("patchSession"):
        await backend.send({"type": "patchSessionResult",
                            "payload": {"sessionId": patch["sessionId"], "success": True, "message": "ok"}})

    # Session cleared (sessionId null); the car leaves; the next car comes without a sessionId
    cleared_at = time.monotonic()
    await backend.send(examples.CLEAR_SESSION_ID.message)  # type: ignore[arg-type]
    await backend.until(lambda: any("sessionId" not in m for m in detections_of(backend, EXAMPLE_ID, cleared_at)),
                        90)
    after = detections_of(backend, EXAMPLE_ID, cleared_at)
    first_without = next(i for i, m in enumerate(after) if "sessionId" not in m)
    assert all("sessionId" not in m for m in after[first_without:]), session_ids(after)

    # 5. Backend Unsubscribes Camera  6. Worker Acknowledges Unsubscription
    unsubscribed_at = time.monotonic()
    await backend.send(examples.FLOW_5_UNSUBSCRIBE.message)  # type: ignore[arg-type]
    await backend.until(lambda: entries(backend, unsubscribed_at) == {}, 15)
    last = backend.of_type("stateReport")[-1]
    assert {k: last[k] for k in examples.FLOW_6_STATE_REPORT.shown} == examples.FLOW_6_STATE_REPORT.shown
    async with httpx.AsyncClient(timeout=10) as http:
        gone = await http.get(f"http://127.0.0.1:{shared_worker.port}/camera/display-001%3Bcam-001/image")
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("application/json")


@pytest.mark.slow
async def test_a_list_with_bad_entries_reconciles_every_good_one(
        shared_worker: Worker, snapshot_camera: SnapshotCamera, shared_model_url: str,
        validated_connect: Connect, worker_log: LogWatch) -> None:
    """(c) protocol.md 'Tolerant per entry': 20 entries, 17 good (17 displays of ONE camera) and 3 bad (no ';'
    in the identifier, an ftp:// stream URL, an invalid modelId), plus a 21st: a duplicate of the first
    good entry's identifier (the first wins, the second is refused). The heartbeat lists exactly the 17."""
    camera = snapshot_camera.url("/basic", USER, PASSWORD)
    common = {"snapshotUrl": camera, "snapshotInterval": 1000, "modelUrl": shared_model_url, "modelId": 101,
              "modelName": "Vehicle Detection"}
    good: list[dict[str, Any]] = [{"subscriptionIdentifier": f"display-c{n:02d};cam-shared", **common}
                                  for n in range(17)]
    bad: list[dict[str, Any]] = [
        {**common, "subscriptionIdentifier": "display-c-no-semicolon"},
        {**{k: v for k, v in common.items() if k not in ("snapshotUrl", "snapshotInterval")},
         "subscriptionIdentifier": "display-c-ftp;cam-shared", "rtspUrl": "ftp://127.0.0.1/stream"},
        {**common, "subscriptionIdentifier": "display-c-model;cam-shared", "modelId": "one-o-one"},
    ]
    duplicate = {**good[0], "modelName": "the second entry, refused"}
    listing = [*good[:8], *bad[:2], *good[8:], bad[2], duplicate]
    assert len(listing) == 21 and all(problems(entry, "subscription") == [] for entry in good)
    assert all(problems(entry, "subscription") != [] for entry in bad)

    backend = await validated_connect(shared_worker.url)
    await reset(backend)
    worker_log.mark()
    await backend.send({"type": "setSubscriptionList", "subscriptions": listing}, check=False)
    wanted = {entry["subscriptionIdentifier"] for entry in good}
    await backend.until(lambda: listed(backend) == wanted
                        and all(e["online"] for e in (entries(backend) or {}).values()), 60)
    report = entries(backend)
    assert report is not None and set(report) == wanted, "exactly the 17 good entries"
    assert report[good[0]["subscriptionIdentifier"]]["modelName"] == "Vehicle Detection", "the first one wins"
    for entry in good:
        assert echo_mismatches(entry, report[entry["subscriptionIdentifier"]]) == []
    assert len(shared_worker.pods()) == 1, "17 displays of one camera: one stream"
    log = worker_log.since()
    for refused in (*bad, duplicate):
        assert refused["subscriptionIdentifier"] in log, f"no reason given for {refused['subscriptionIdentifier']}"

    # The same list again changes nothing (protocol.md: idempotent).
    pods = {p.pid for p in shared_worker.pods()}
    again = time.monotonic()
    await backend.send({"type": "setSubscriptionList", "subscriptions": listing}, check=False)
    await asyncio.sleep(3)
    assert listed(backend, again) == wanted and {p.pid for p in shared_worker.pods()} == pods


@pytest.mark.slow
async def test_the_heartbeat_echoes_each_subscription_exactly_as_sent(
        shared_worker: Worker, rtsp_camera: CredentialedRtspServer, snapshot_camera: SnapshotCamera,
        shared_model_url: str, validated_connect: Connect) -> None:
    """(d) Field by field: the URL in use (credentials included), snapshotInterval, the four crops, modelId,
    modelName. All four crops 0 means no crop but is echoed as sent; a key sent as null equals a key left out."""
    rtsp = rtsp_camera.url
    snapshot = snapshot_camera.url("/digest", USER, PASSWORD)
    model = {"modelUrl": shared_model_url}
    sent: list[dict[str, Any]] = [
        {"subscriptionIdentifier": "display-d1;cam-rtsp", "rtspUrl": rtsp, **model, "modelId": 7,
         "modelName": "Echo A"},
        {"subscriptionIdentifier": "display-d2;cam-snap", "snapshotUrl": snapshot, "snapshotInterval": 1000,
         **model, "modelId": 9, "modelName": "Echo B", "cropX1": 10, "cropY1": 20, "cropX2": 300, "cropY2": 200},
        {"subscriptionIdentifier": "display-d3;cam-snap", "rtspUrl": rtsp, "snapshotUrl": snapshot,
         "snapshotInterval": 1000, **model, "modelId": 10, "modelName": "Echo C (both URLs)"},
        {"subscriptionIdentifier": "display-d4;cam-snap", "snapshotUrl": snapshot, "snapshotInterval": 1000,
         **model, "modelId": 11, "modelName": "Echo D (crops 0)", "cropX1": 0, "cropY1": 0, "cropX2": 0,
         "cropY2": 0},
        {"subscriptionIdentifier": "display-d5;cam-rtsp", "rtspUrl": rtsp, "snapshotUrl": None,
         "snapshotInterval": None, **model, "modelId": 8, "modelName": "Echo E (nulls)",
         **dict.fromkeys(CROP_KEYS)},
    ]
    backend = await validated_connect(shared_worker.url)
    await reset(backend)
    await backend.send({"type": "setSubscriptionList", "subscriptions": sent})
    wanted = {entry["subscriptionIdentifier"] for entry in sent}
    await backend.until(lambda: listed(backend) == wanted, 30)
    report = entries(backend)
    assert report is not None
    mismatches = {e["subscriptionIdentifier"]: echo_mismatches(e, report[e["subscriptionIdentifier"]])
                  for e in sent}
    assert mismatches == {key: [] for key in wanted}, mismatches
    await backend.until(lambda: all(e["online"] for e in (entries(backend) or {}).values()), 60)

    def without(entry: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if k not in keys}

    null_entry, plain = report["display-d5;cam-rtsp"], report["display-d1;cam-rtsp"]
    assert without(null_entry, "subscriptionIdentifier", "modelId", "modelName", "online") == \
        without(plain, "subscriptionIdentifier", "modelId", "modelName", "online"), "null equals left out"

    # The same list with the null keys left out: no parameter changed, so nothing restarts.
    pods = {p.pid for p in shared_worker.pods()}
    assert len(pods) == 2, "one RTSP camera and one snapshot camera"
    again = time.monotonic()
    same = [*sent[:4], {k: v for k, v in sent[4].items() if v is not None}]
    await backend.send({"type": "setSubscriptionList", "subscriptions": same})
    await asyncio.sleep(3)
    assert {p.pid for p in shared_worker.pods()} == pods, "a null key and a left-out key are the same"
    assert all(e["online"] for e in (entries(backend, again) or {}).values())


@pytest.mark.slow
async def test_image_detection_carries_a_session_id_only_while_the_display_has_one(
        shared_worker: Worker, rtsp_camera: CredentialedRtspServer, shared_model_url: str,
        validated_connect: Connect) -> None:
    """(e) Two displays of one RTSP camera: no sessionId key without a session; the backend's integer with it;
    per display; left out again after setSessionId null."""
    common = {"rtspUrl": rtsp_camera.url, "modelUrl": shared_model_url, "modelId": 101,
              "modelName": "Vehicle Detection", "cropX1": 40, "cropY1": 30, "cropX2": 620, "cropY2": 460}
    first, second = "display-e1;cam-rtsp", "display-e2;cam-rtsp"
    backend = await validated_connect(shared_worker.url)
    await reset(backend)
    await backend.send({"type": "setSubscriptionList", "subscriptions": [
        {"subscriptionIdentifier": first, **common}, {"subscriptionIdentifier": second, **common}]})
    await backend.until(lambda: detections_of(backend, first), 90)
    assert all("sessionId" not in m for m in backend.of_type("imageDetection")), \
        session_ids(backend.of_type("imageDetection"))

    set_at = time.monotonic()
    await backend.send({"type": "setSessionId", "payload": {"displayIdentifier": "display-e1", "sessionId": 4242}})
    await backend.until(lambda: any("sessionId" in m for m in detections_of(backend, first, set_at)), 90)
    carried = [m["sessionId"] for m in detections_of(backend, first, set_at) if "sessionId" in m]
    assert carried[0] == 4242 and type(carried[0]) is int
    assert all("sessionId" not in m for m in detections_of(backend, second)), "another display's session leaked"

    cleared_at = time.monotonic()
    await backend.send({"type": "setSessionId", "payload": {"displayIdentifier": "display-e1", "sessionId": None}})
    await backend.until(lambda: any("sessionId" not in m for m in detections_of(backend, first, cleared_at)), 90)
    after = detections_of(backend, first, cleared_at)
    first_without = next(i for i, m in enumerate(after) if "sessionId" not in m)
    assert all("sessionId" not in m for m in after[first_without:]), session_ids(after)
    await reset(backend)
