"""The broker's /metrics: backend messages and events counted, and the fleet read from the pods' latest reports."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from broker.app import build_app
from broker.planning import pod_name
from broker.pods import PodLink
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.pods import POD_MESSAGE, PodUsage, StreamReport
from tests.broker.test_service import Backend, event, subscription
from tests.support import metric_names
from tests.support.embedded import Worker
from tests.support.recording import RecordingRunner
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

TOKEN = "t0ken-0f-the-br0ker-xyz"
URL = "rtsp://admin:Pa55word@cam-1/stream"
POD = pod_name(f"{URL}|None")


class PodSocket:
    """A pod's end of its link: records what the broker sends it."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(data)


def report(*, frames: int = 100, reconnects: int = 0, online: bool = True, last_frame_at: float | None = None,
           display_errors: dict[str, str] | None = None, started_at: float | None = None) -> StreamReport:
    return StreamReport(online=online, state="streaming", fps=5.0, frames=frames, reconnects=reconnects,
                        last_frame_at=time.time() - 3 if last_frame_at is None else last_frame_at, last_error=None,
                        http_port=0, display_errors=display_errors or {}, started_at=started_at,
                        usage=PodUsage(cpu_used_cores=0.5, cpu_limit_cores=2, memory_used_bytes=1 << 20,
                                       memory_limit_bytes=1 << 30))


@pytest.fixture
def broker() -> Broker:
    return Broker(BrokerSettings(event_max_age_sec=1e10, heartbeat_interval_sec=3600), RecordingRunner())


def value(broker: Broker, name: str, **labels: str) -> float | None:
    return broker.metrics.registry.get_sample_value(name, labels)


def series(broker: Broker) -> dict[str, list[dict[str, str]]]:
    """Every sample of a scrape, by name: its labels."""
    found: dict[str, list[dict[str, str]]] = {}
    page = TestClient(build_app(broker)).get("/metrics").text
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(dict(sample.labels))
    return found


# ---- backend messages ------------------------------------------------------------------------------------

def test_backend_messages_are_counted_by_type_and_refused_ones_by_reason(broker: Broker) -> None:
    with TestClient(build_app(broker)) as client, client.websocket_connect("/") as backend:
        backend.receive_json()
        for raw in ("not json", '{"type": "launchRocket"}', '{"type": "setSessionId", "payload": 3}',
                    json.dumps({"type": "requestState", "pad": "x" * (1 << 20)}), '{"type": "requestState"}'):
            backend.send_text(raw)
        assert backend.receive_json()["type"] == "stateReport"
        assert value(broker, "detector_broker_backend_connected") == 1
        page = client.get("/metrics").text
    assert value(broker, "detector_broker_backend_connected") == 0
    assert value(broker, "detector_broker_backend_connections_total") == 1
    for reason in ("too_large", "not_json", "unknown_type", "invalid"):
        assert value(broker, "detector_broker_messages_refused_total", reason=reason) == 1, reason
    assert value(broker, "detector_broker_messages_received_total", type="requestState") == 1
    assert value(broker, "detector_broker_messages_received_total", type="setSubscriptionList") == 0, \
        "every type is there from the start"
    assert value(broker, "detector_broker_messages_sent_total", type="stateReport") == 2
    assert 'detector_broker_messages_refused_total{reason="too_large"} 1.0' in page


def test_metrics_need_the_token_like_the_other_endpoints() -> None:
    broker = Broker(BrokerSettings(auth_token=TOKEN), RecordingRunner())
    with TestClient(build_app(broker)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and "detector_broker_backend_connected 0.0" in allowed.text
        assert client.get("/healthz").status_code == 200


async def test_reconciles_are_timed(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    await broker.reconcile([])
    assert value(broker, "detector_broker_reconcile_seconds_count") == 2
    assert value(broker, "detector_broker_subscriptions") == 0


# ---- events and the backlog ------------------------------------------------------------------------------

async def test_events_routed_de_duplicated_settled_delivered(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    first, gone = event("d1;cam", visit="a"), event("d9;gone", visit="b")
    for sent in (first, first, gone):
        await broker.on_event(sent, POD)
    assert value(broker, "detector_broker_backlog_messages") == 1, "kept: no backend yet"
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    await broker.on_event(first, POD)  # a resend after delivery
    assert [value(broker, "detector_broker_events_total", outcome=outcome)
            for outcome in ("routed", "duplicate", "settled")] == [1, 2, 1]
    assert value(broker, "detector_broker_events_delivered_total") == 1
    assert value(broker, "detector_broker_messages_sent_total", type="imageDetection") == 1
    assert value(broker, "detector_broker_backlog_messages") == 0


async def test_expired_and_evicted_events_are_counted() -> None:
    broker = Broker(BrokerSettings(event_max_age_sec=60, max_kept_events=1), RecordingRunner())
    await broker.reconcile([subscription("d1;cam")])
    old = event("d1;cam", visit="a")  # captured in 2025: past any max age of a minute
    await broker.on_event(old, POD)
    await broker.on_event(event("d1;cam", visit="b"), POD)  # the backlog holds one: the first is let go
    broker.connect_backend(Backend())  # type: ignore[arg-type]
    await broker.delivery.flush()
    assert value(broker, "detector_broker_events_dropped_total", reason="evicted") == 1
    assert value(broker, "detector_broker_events_dropped_total", reason="expired") == 1
    assert value(broker, "detector_broker_events_delivered_total") == 0


# ---- the fleet -------------------------------------------------------------------------------------------

async def test_each_camera_pod_is_read_from_its_latest_report(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam", url=URL), subscription("d2;cam", url=URL),
                            subscription("d3;other", url="rtsp://cam-2/stream")])
    other = pod_name("rtsp://cam-2/stream|None")
    link = broker.pods.attach(POD, PodSocket())  # type: ignore[arg-type]
    broker.pods.update(link, report(frames=42, reconnects=2, last_frame_at=time.time() - 7,
                                    display_errors={"d2;cam": "model 1: cannot load"}))
    assert value(broker, "detector_camera_online", camera_pod=POD) == 1
    assert value(broker, "detector_camera_reporting", camera_pod=POD) == 1
    assert value(broker, "detector_camera_fps", camera_pod=POD) == 5
    assert 7 <= (value(broker, "detector_camera_frame_age_seconds", camera_pod=POD) or 0) < 9
    assert value(broker, "detector_camera_frames_total", camera_pod=POD) == 42
    assert value(broker, "detector_camera_reconnects_total", camera_pod=POD) == 2
    assert value(broker, "detector_camera_restarts_total", camera_pod=POD) == 0
    assert value(broker, "detector_camera_memory_bytes", camera_pod=POD) == 1 << 20
    assert value(broker, "detector_subscription_model_error", camera_pod=POD, subscription="d1;cam") == 0
    assert value(broker, "detector_subscription_model_error", camera_pod=POD, subscription="d2;cam") == 1
    assert value(broker, "detector_subscription_info", camera_pod=POD, subscription="d2;cam", model_id="1") == 1
    # A pod that has not reported: offline, and no figure it did not send.
    assert value(broker, "detector_camera_reporting", camera_pod=other) == 0
    assert value(broker, "detector_camera_online", camera_pod=other) == 0
    assert value(broker, "detector_camera_fps", camera_pod=other) is None
    assert value(broker, "detector_broker_pods") == 2


async def test_cameras_that_are_gone_leave_no_series_and_no_label_holds_a_url(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam", url=URL), subscription("d3;other", url="rtsp://cam-2/stream")])
    broker.pods.update(broker.pods.attach(POD, PodSocket()), report())  # type: ignore[arg-type]
    before = series(broker)
    labels = json.dumps(before)
    assert "Pa55word" not in labels and "rtsp" not in labels
    assert {s["camera_pod"] for s in before["detector_camera_online"]} == {POD, pod_name("rtsp://cam-2/stream|None")}
    await broker.reconcile([subscription("d3;other", url="rtsp://cam-2/stream")])
    after = series(broker)
    assert all(POD not in json.dumps(samples) for samples in after.values()), "a removed camera is not scraped"


def link_reporting(broker: Broker, first: StreamReport) -> PodLink:
    """A new link of the camera pod POD (a process starting, or a link dropped and made again) and its first report."""
    link = broker.pods.attach(POD, PodSocket())  # type: ignore[arg-type]
    broker.pods.update(link, first)
    return link


async def test_a_pod_that_reports_a_new_start_time_restarted(broker: Broker) -> None:
    """Even one that died before it read a frame: its start time changed, whatever its counts say."""
    await broker.reconcile([subscription("d1;cam", url=URL)])
    link_reporting(broker, report(frames=0, started_at=1000.0))
    link_reporting(broker, report(frames=0, started_at=1000.0))  # the link dropped, the process ran on
    assert value(broker, "detector_camera_restarts_total", camera_pod=POD) == 0
    for started_at in (1010.0, 1020.0):
        link_reporting(broker, report(frames=0, started_at=started_at))
    assert value(broker, "detector_camera_restarts_total", camera_pod=POD) == 2


def test_a_report_with_fields_this_broker_does_not_know_is_read() -> None:
    """Pods upgraded before their broker add fields to their reports: they are ignored, never refused."""
    newer = {**report().model_dump(mode="json"), "a_later_field": {"x": 1}}
    assert POD_MESSAGE.validate_json(json.dumps(newer)) == report().model_copy(
        update={"last_frame_at": newer["last_frame_at"]})


async def test_a_pod_that_comes_back_counting_from_zero_restarted(broker: Broker) -> None:
    """Pods from before ``started_at``: a new link whose counts went back is a restart."""
    await broker.reconcile([subscription("d1;cam", url=URL)])
    link_reporting(broker, report(frames=500, reconnects=1))
    link_reporting(broker, report(frames=520, reconnects=1))  # the link dropped, the process ran on
    assert value(broker, "detector_camera_restarts_total", camera_pod=POD) == 0
    restarted = link_reporting(broker, report(frames=0, reconnects=0))
    broker.pods.update(restarted, report(frames=3, reconnects=0))  # later reports on the same link: same process
    assert value(broker, "detector_camera_restarts_total", camera_pod=POD) == 1
    await broker.reconcile([])
    await broker.reconcile([subscription("d1;cam", url=URL)])
    assert value(broker, "detector_camera_restarts_total", camera_pod=POD) == 0, "a camera added again starts from 0"


async def test_the_scrape_serves_every_metric_the_docs_list_and_no_other(broker: Broker) -> None:
    """README.md ("Watching it run") lists the broker's metrics: each is served, and each one served is listed."""
    await broker.reconcile([subscription("d1;cam", url=URL)])
    broker.pods.update(broker.pods.attach(POD, PodSocket()), report())  # type: ignore[arg-type]
    served = metric_names.exposed(TestClient(build_app(broker)).get("/metrics").text)
    assert metric_names.documented(metric_names.BROKER_SECTION) == served


# ---- a real camera pod -----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_killed_camera_pod_is_counted_as_a_restart(worker: Worker, model_url: str, connect: Any,
                                                           camera_servers: tuple[RtspServer, SnapshotCamera]) -> None:
    rtsp, _ = camera_servers
    backend = await connect(worker.url)
    await backend.send({"type": "setSubscriptionList", "subscriptions": [
        {"subscriptionIdentifier": "display-r;cam-r", "rtspUrl": rtsp.url, "modelUrl": model_url, "modelId": 1,
         "modelName": "gas-station"}]})

    async def scraped(name: str) -> float:
        async with httpx.AsyncClient(timeout=5) as http:
            page = (await http.get(f"http://127.0.0.1:{worker.port}/metrics")).text
        found = [s.value for f in text_string_to_metric_families(page) for s in f.samples if s.name == name]
        return float(found[0]) if found else -1.0

    async def until(name: str, check: Callable[[float], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check(await scraped(name)):
            assert time.monotonic() < deadline, f"{name}: {await scraped(name)}"
            await asyncio.sleep(0.25)

    await until("detector_camera_frames_total", lambda frames: frames > 0, 90)
    assert await scraped("detector_camera_restarts_total") == 0
    (pod,) = worker.pods()
    pod.send_signal(signal.SIGKILL)  # the local runner starts it again
    await until("detector_camera_restarts_total", lambda restarts: restarts == 1, 90)
    await until("detector_camera_online", lambda online: online == 1, 90)
