"""The console's data and HTTP side: the snapshot, the token then a cookie, the event stream, local assets.

The page itself runs in a real browser in test_console_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from broker import console, console_state, decoding
from broker.app import build_app
from broker.console_state import camera_state
from broker.pods import PodLink
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.pods import DetectionEvent, SightedBox, Sighting, StreamReport
from tests.support.model_server import serve_mutable
from tests.support.recording import RecordingRunner
from tests.support.servers import free_port

TOKEN = "console-t0ken-0123456789"
NOW = 1_800_000_000.0
FIRST, SECOND, REFUSED = "display-1;cam-1", "display-2;cam-2", "display-3;cam-3"
BOXES = Sighting(captured_at=NOW - 0.5, boxes=[SightedBox(x1=110, y1=100, x2=300, y2=260, label="Car",
                                                           confidence=0.91)])


def report(**changes: Any) -> StreamReport:
    values: dict[str, Any] = {"online": True, "state": "online", "fps": 9.5, "last_frame_at": NOW - 0.25,
                              "frames": 120, "reconnects": 1, "last_error": None, "http_port": 0,
                              "sightings": {FIRST: BOXES}}
    return StreamReport(**{**values, **changes})


def entries() -> list[dict[str, Any]]:
    common = {"modelUrl": "http://deploy:pw-model@models/gas.mpta", "modelId": 7, "modelName": "gas"}
    return [{"subscriptionIdentifier": FIRST, "rtspUrl": "rtsp://admin:pw-cam@10.0.0.1/s", **common,
             "cropX1": 100, "cropY1": 80, "cropX2": 560, "cropY2": 400},
            {"subscriptionIdentifier": SECOND, "snapshotUrl": "http://admin:pw-cam@10.0.0.2/snap.jpg",
             "snapshotInterval": 500, **common},
            {"subscriptionIdentifier": REFUSED, "rtspUrl": "ftp://admin:pw-cam@10.0.0.3/s", **common}]


async def subscribed(broker: Broker) -> None:
    await broker.handle(decoding.parse_backend_message(json.dumps(
        {"type": "setSubscriptionList", "subscriptions": entries()})))


def attach(broker: Broker, identifier: str, current: StreamReport) -> PodLink:
    """A camera pod's link as the broker holds it, with ``current`` as its latest report."""
    name = broker.pod_of(identifier)
    assert name is not None
    link = broker.pods.attach(name, None)  # type: ignore[arg-type]  # the socket is not used here
    broker.pods.update(link, current)
    return link


async def test_the_snapshot_shows_every_subscription_from_its_pods_report() -> None:
    broker = Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner())
    await subscribed(broker)
    attach(broker, FIRST, report())
    await broker.handle(decoding.parse_backend_message(json.dumps(
        {"type": "setSessionId", "payload": {"displayIdentifier": "display-1", "sessionId": 777}})))
    await broker.on_event(DetectionEvent(id="e1", subscription=FIRST, captured_at=NOW - 3, visit="v" * 32,
                                         fields={"brand": "Toyota", "body_type": "Sedan",
                                                 "license_plate": "KL482TX"}), "pod")

    state = console_state.snapshot(broker, now=NOW)

    assert [camera.identifier for camera in state.cameras] == [FIRST, SECOND], "the refused entry is no camera"
    first, second = state.cameras
    assert (first.state, first.reason, first.fps, first.frames, first.reconnects) == ("online", None, 9.5, 120, 1)
    assert first.frame_age_s == pytest.approx(0.25)
    assert first.crop is not None and (first.crop.x1, first.crop.y2) == (100, 400)
    assert first.sighting == BOXES
    assert first.last_event is not None and (first.last_event.brand, first.last_event.body_type,
                                             first.last_event.license_plate) == ("Toyota", "Sedan", "KL482TX")
    assert (first.session_id, first.model_id, first.model_name, first.stream) == (777, 7, "gas", "rtsp")
    assert first.pod == broker.pod_of(FIRST)
    assert (second.state, second.stream, second.frame_age_s, second.sighting, second.last_event) == (
        "starting", "snapshot", None, None, None)
    (refused,) = state.refused
    assert (refused.entry, refused.reason) == (REFUSED, "stream") and "ftp" in refused.detail
    assert (state.backend.connected, state.backend.backlog, state.runner) == (False, 1, "local"), \
        "the event waits for a backend"
    assert "pw-" not in state.model_dump_json(), "no URL, no password"


async def test_the_backend_link_and_since_when() -> None:
    broker = Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner())
    socket: Any = object()
    broker.connect_backend(socket)
    connected = console_state.snapshot(broker).backend
    broker.disconnect_backend(socket)
    gone = console_state.snapshot(broker).backend
    assert connected.connected and not gone.connected and gone.since >= connected.since


@pytest.mark.parametrize(("changes", "identifier", "expected"), [
    ({}, FIRST, ("online", None)),
    ({"state": "connecting", "frames": 0, "reconnects": 0, "online": False}, FIRST,
     ("starting", "connecting to the camera")),
    ({"state": "starting", "frames": 0, "reconnects": 0, "online": False}, FIRST, ("starting", "loading its model")),
    ({"state": "backing-off", "online": False, "last_error": "cannot open rtsp://admin:***@10.0.0.1/s"}, FIRST,
     ("reconnecting", "cannot open rtsp://admin:***@10.0.0.1/s")),
    ({"state": "stalled", "online": False}, FIRST, ("reconnecting", "stream stalled")),
    ({"state": "failed", "online": False, "last_error": "retries exhausted"}, FIRST, ("failed", "retries exhausted")),
    ({"display_errors": {FIRST: "model 7: not a zip"}}, FIRST, ("model error", "model 7: not a zip")),
    ({"display_errors": {FIRST: "model 7: not a zip"}}, SECOND, ("online", None)),
])
def test_a_cameras_state_and_why(changes: dict[str, Any], identifier: str, expected: tuple[str, str | None]) -> None:
    assert camera_state(report(**changes), identifier) == expected
    assert camera_state(None, identifier) == ("starting", "no report from its camera pod yet")


def test_reasons_from_pods_are_redacted_once_more() -> None:
    """A pod never sends a password, but if one did the console would not show it."""
    broker = Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner())
    asyncio.run(subscribed(broker))
    attach(broker, FIRST, report(state="backing-off", online=False, last_error="open rtsp://admin:pw-cam@h/s"))
    (camera, _) = console_state.snapshot(broker).cameras
    assert camera.reason == "open rtsp://admin:***@h/s"


# ---- HTTP: the token once, then a cookie --------------------------------------------------------------

@pytest.fixture
def secured() -> Iterator[TestClient]:
    broker = Broker(BrokerSettings(heartbeat_interval_sec=3600, auth_token=TOKEN), RecordingRunner())
    with TestClient(build_app(broker)) as client:
        yield client


@pytest.mark.parametrize("path", ["/console", "/console/state", "/console/events", "/console/console.js"])
def test_without_the_token_the_console_is_closed(secured: TestClient, path: str) -> None:
    refused = secured.get(path)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert secured.get(f"{path}?token=wrong-token-0123456789").status_code == 401


def test_the_token_in_the_address_once_then_a_cookie(secured: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    signed_in = secured.get(f"/console?token={TOKEN}", follow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "console"
    cookie = signed_in.headers["set-cookie"]
    assert re.search(r"HttpOnly", cookie) and re.search(r"SameSite=strict", cookie, re.I) and "Path=/" in cookie
    assert TOKEN not in cookie, "the cookie holds a value derived from the token, not the token"

    page = secured.get("/console")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and "console/console.js" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert secured.get("/console/state").status_code == 200
    assert secured.get("/console/console.css").headers["content-type"].startswith("text/css")
    assert secured.get("/camera/display-1%3Bcam-1/image").status_code == 404, "images: past the token"
    assert secured.get("/refusals").status_code == 200

    with secured.websocket_connect("/") as socket, pytest.raises(WebSocketDisconnect) as closed:
        socket.receive_text()
    assert closed.value.code == 1008, "the cookie opens pages, never the backend's or the pods' WebSockets"

    secured.cookies.set("detector_console", "0" * 64)
    assert secured.get("/console/state").status_code == 401
    assert [r.reason for r in caplog.records if r.getMessage().startswith("refused")][-1] == "stale cookie"  # type: ignore[attr-defined]


def test_an_open_broker_serves_the_console_without_a_cookie() -> None:
    with TestClient(build_app(Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner()))) as client:
        page = client.get("/console?token=anything")
        assert page.status_code == 200 and "set-cookie" not in page.headers
        assert client.get("/console/state").json()["cameras"] == []


def test_every_asset_is_served_by_the_broker() -> None:
    """Offline: no CDN, no other site; only the known files are served."""
    with TestClient(build_app(Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner()))) as client:
        page = client.get("/console").text
        assets = [client.get(f"/console/{name}") for name in console.ASSETS]
        assert client.get("/console/__init__.py").status_code == 404
        assert client.get("/console/..%2Fconsole.py").status_code == 404
    assert {a.headers["content-type"].split(";")[0] for a in assets} == {"text/javascript", "text/css"}
    for text in [page, *(a.text for a in assets)]:
        assert re.findall(r"(?:https?:)?//[a-z0-9]", text) == [], "every URL is relative to the broker"
    assert sorted(re.findall(r'(?:src|href)="([^"]+)"', page)) == ["console/console.css", "console/console.js",
                                                                   "data:,"]


@dataclass
class ClusterRunner(RecordingRunner):
    """The kubernetes runner as far as the console goes: every camera pod serves its frame at ``url``."""

    url: str = ""

    async def image_url(self, name: str, report: StreamReport | None) -> str | None:
        return self.url


def test_in_a_cluster_frames_come_through_the_pods() -> None:
    jpeg = b"\xff\xd8 a camera pod's latest frame \xff\xd9"
    with serve_mutable({"image": jpeg}) as base:
        runner = ClusterRunner(url=f"{base}/image")
        broker = Broker(BrokerSettings(heartbeat_interval_sec=3600, auth_token=TOKEN, runner="kubernetes"), runner)
        with TestClient(build_app(broker)) as client:
            with client.websocket_connect(f"/?token={TOKEN}") as backend:
                backend.receive_text()
                backend.send_text(json.dumps({"type": "setSubscriptionList", "subscriptions": entries()}))
                backend.send_text(json.dumps({"type": "requestState"}))
                backend.receive_text()
            client.get(f"/console?token={TOKEN}")
            state = client.get("/console/state").json()
            image = client.get(f"/camera/{FIRST.replace(';', '%3B')}/image")
    assert state["runner"] == "kubernetes" and [c["identifier"] for c in state["cameras"]] == [FIRST, SECOND]
    assert image.status_code == 200 and image.content == jpeg and image.headers["content-type"] == "image/jpeg"


# ---- the event stream ------------------------------------------------------------------------------

@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Broker, str]]:
    monkeypatch.setattr(console, "PUSH_INTERVAL_S", 0.2)
    monkeypatch.setattr(console, "STREAM_LIFETIME_S", 1.5)
    broker = Broker(BrokerSettings(heartbeat_interval_sec=3600), RecordingRunner())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(broker), host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield broker, f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_the_event_stream_pushes_each_change_and_ends_for_the_browser_to_reopen(
        served: tuple[Broker, str]) -> None:
    broker, base = served
    await subscribed(broker)
    link = attach(broker, FIRST, report())
    states: list[str] = []
    async with httpx.AsyncClient() as client, client.stream("GET", f"{base}/console/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in stream.aiter_lines() if _note(line, states, broker, link)]
    assert lines[0] == "retry: 200", "the browser reopens the stream this soon"
    assert states[0] == "online" and "reconnecting" in states, "a camera going offline shows in the next push"
    assert 5 <= len(states) <= 10, "one snapshot per push interval, until the stream's lifetime"


def _note(line: str, states: list[str], broker: Broker, link: PodLink) -> bool:
    """Collects the first camera's state from each event; after the second, the camera goes offline."""
    if line.startswith("data: "):
        states.append(json.loads(line[6:])["cameras"][0]["state"])
        if len(states) == 2:
            broker.pods.update(link, report(online=False, state="backing-off", last_error="connection refused"))
    return bool(line)
