"""The shapes the original worker's backend sends and expects, at the broker (no processes, no HTTP).

Per entry, not per message: a bad entry is refused on its own (log line, counter by reason, kept as state)
and every good entry of the same list is reconciled. Both URLs: the snapshot when ``snapshotInterval`` is
given, else RTSP. ``null`` is a key left out; four ``0`` crops are no crop. The heartbeat echoes what was
sent (credentials included: the original's backend compares them); ``sessionId`` is left out while a
display has none; a better result for an announced car reaches the backend.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from broker import protocol
from broker.planning import plan
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.pods import GpuUsage, PodUsage, StreamReport
from tests.broker.test_local_runner import StartNothing
from tests.broker.test_service import Backend, event
from tests.support.recording import RecordingRunner

RTSP = "rtsp://admin:S3cret!@10.0.0.5:554/stream1"
SNAPSHOT = "http://viewer:S3cret!@10.0.0.5/snap.jpg?token=abc"
MODEL = {"modelUrl": "https://models.example/gas.mpta?X-Amz-Signature=deadbeef", "modelId": 101,
         "modelName": "Vehicle Detection"}


def entry(identifier: str, **fields: Any) -> dict[str, Any]:
    return {"subscriptionIdentifier": identifier, **MODEL, **fields}


def subscription_list(*entries: Any) -> protocol.SetSubscriptionList:
    return protocol.SetSubscriptionList(type="setSubscriptionList", subscriptions=list(entries))


@pytest.fixture
def broker() -> Broker:
    return Broker(BrokerSettings(event_max_age_sec=1e10), RecordingRunner())


def specs(broker: Broker) -> list[Any]:
    assert isinstance(broker.runner, RecordingRunner)
    return list(broker.runner.specs.values())


def counted(broker: Broker, reason: str) -> float:
    return broker.metrics.registry.get_sample_value("detector_broker_subscriptions_refused_total",
                                                     {"reason": reason}) or 0.0


# ---- the original's stream rule, nulls and crops ------------------------------------------------------

@pytest.mark.parametrize(("fields", "kind", "url"), [
    ({"rtspUrl": RTSP, "snapshotUrl": SNAPSHOT, "snapshotInterval": 5000}, "snapshot", SNAPSHOT),
    ({"rtspUrl": RTSP, "snapshotUrl": SNAPSHOT}, "rtsp", RTSP),
    ({"rtspUrl": RTSP, "snapshotUrl": SNAPSHOT, "snapshotInterval": None}, "rtsp", RTSP),
    ({"rtspUrl": None, "snapshotUrl": SNAPSHOT, "snapshotInterval": 2000}, "snapshot", SNAPSHOT),
    ({"rtspUrl": RTSP, "snapshotInterval": 1000}, "rtsp", RTSP),
])
async def test_both_urls_follow_the_original_rule(broker: Broker, fields: dict[str, Any], kind: str,
                                                  url: str) -> None:
    await broker.handle(subscription_list(entry("display-001;cam-001", **fields)))
    (spec,) = specs(broker)
    assert (spec.stream.kind, spec.stream.url) == (kind, url)
    assert spec.stream.snapshot_interval_ms == (fields.get("snapshotInterval") if kind == "snapshot" else None)
    assert broker.refusals == {}


async def test_null_keys_are_keys_left_out_and_four_zero_crops_are_no_crop(broker: Broker) -> None:
    await broker.handle(subscription_list(
        entry("d1;cam", rtspUrl=RTSP, snapshotUrl=None, snapshotInterval=None, cropX1=None, cropY1=None,
              cropX2=None, cropY2=None),
        entry("d2;cam", rtspUrl=RTSP, cropX1=0, cropY1=0, cropX2=0, cropY2=0)))
    (spec,) = specs(broker)
    assert [(d.identifier, d.crop) for d in spec.subscriptions] == [("d1;cam", None), ("d2;cam", None)]
    assert broker.refusals == {}


# ---- tolerant per entry -----------------------------------------------------------------------------

async def test_twenty_entries_with_three_bad_reconcile_the_seventeen(broker: Broker,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    good = [entry(f"display-{i:03d};cam-{i % 4}", rtspUrl=f"rtsp://u:p@10.0.0.{i % 4}/live") for i in range(17)]
    bad = [entry("display-no-separator", rtspUrl=RTSP),               # bad identifier
           entry("display-100;cam-9", rtspUrl="ftp://u:S3cret!@10.0.0.9/x"),  # bad stream URL
           {**entry("display-101;cam-9", rtspUrl=RTSP), "modelId": "seven"}]  # bad model id
    caplog.set_level(logging.ERROR, logger="broker.service")
    await broker.handle(subscription_list(good[0], bad[0], *good[1:9], bad[1], *good[9:], bad[2]))
    assert set(broker.subscriptions) == {e["subscriptionIdentifier"] for e in good}
    assert sum(len(spec.subscriptions) for spec in specs(broker)) == 17 and len(specs(broker)) == 4
    assert {(r.entry, r.reason) for r in broker.refusals.values()} == {
        ("display-no-separator", "identifier"), ("display-100;cam-9", "stream"), ("display-101;cam-9", "model")}
    lines = [r for r in caplog.records if r.getMessage() == "subscription entry refused"]
    assert sorted(r.subscription for r in lines) == sorted(r.entry for r in broker.refusals.values())  # type: ignore[attr-defined]
    assert all("S3cret" not in f"{r.error} {r.subscription}" for r in lines)  # type: ignore[attr-defined]
    assert (counted(broker, "identifier"), counted(broker, "stream"), counted(broker, "model")) == (1, 1, 1)
    assert broker.metrics.registry.get_sample_value("detector_broker_refused_entries") == 3

    await broker.handle(subscription_list(*good))  # fixed by the backend: the refusals are gone
    assert broker.refusals == {} and broker.metrics.registry.get_sample_value("detector_broker_refused_entries") == 0


async def test_of_two_entries_with_one_identifier_the_first_is_used(broker: Broker) -> None:
    await broker.handle(subscription_list(entry("d1;cam", rtspUrl=RTSP, cropX1=1, cropY1=1, cropX2=9, cropY2=9),
                                          entry("d1;cam", rtspUrl="rtsp://other/cam")))
    (spec,) = specs(broker)
    assert spec.stream.url == RTSP and spec.subscriptions[0].crop is not None
    (refusal,) = broker.refusals.values()
    assert (refusal.entry, refusal.reason) == ("d1;cam", "duplicate") and counted(broker, "duplicate") == 1


async def test_a_refused_update_keeps_the_running_camera_as_it_was(broker: Broker) -> None:
    await broker.handle(subscription_list(entry("d1;cam", rtspUrl=RTSP), entry("d2;cam", rtspUrl=RTSP)))
    before = specs(broker)
    await broker.handle(subscription_list(entry("d1;cam", rtspUrl="rtmp://broken/x"), entry("d2;cam", rtspUrl=RTSP)))
    assert specs(broker) == before and broker.subscriptions["d1;cam"].rtspUrl == RTSP
    assert broker.refusals["d1;cam"].reason == "stream"
    await broker.handle(subscription_list(entry("d2;cam", rtspUrl=RTSP)))  # left out now: stopped
    assert set(broker.subscriptions) == {"d2;cam"} and broker.refusals == {}


async def test_legacy_subscribe_refuses_or_clears_one_entry(broker: Broker) -> None:
    await broker.handle(protocol.Subscribe(type="subscribe", payload=entry("d1;cam", snapshotUrl=SNAPSHOT)))
    assert broker.subscriptions == {} and broker.refusals["d1;cam"].reason == "stream"
    assert "snapshotInterval" in broker.refusals["d1;cam"].detail
    await broker.handle(protocol.Subscribe(type="subscribe", payload=entry("d1;cam", snapshotUrl=SNAPSHOT,
                                                                            snapshotInterval=500)))
    assert set(broker.subscriptions) == {"d1;cam"} and broker.refusals == {}
    await broker.handle(protocol.Subscribe(type="subscribe", payload=["not", "an", "object"]))
    assert broker.refusals["#0"].reason == "not_an_object" and set(broker.subscriptions) == {"d1;cam"}


# ---- the heartbeat echoes what was sent ---------------------------------------------------------------

async def test_the_heartbeat_echoes_each_entry_exactly_as_sent(broker: Broker) -> None:
    sent = [entry("d1;cam", rtspUrl=RTSP, snapshotUrl=SNAPSHOT, snapshotInterval=5000,
                  cropX1=100, cropY1=200, cropX2=300, cropY2=400),
            entry("d2;cam", rtspUrl=RTSP, cropX1=0, cropY1=0, cropX2=0, cropY2=0),
            entry("d3;cam", rtspUrl=RTSP, snapshotUrl=None)]
    await broker.handle(subscription_list(*sent))
    wire = json.loads(json.dumps(broker.state_report().to_wire()))
    by_id = {c["subscriptionIdentifier"]: c for c in wire["cameraConnections"]}
    assert by_id["d1;cam"] == {"subscriptionIdentifier": "d1;cam", "modelId": 101, "modelName": "Vehicle Detection",
                               "online": False, "rtspUrl": None, "snapshotUrl": SNAPSHOT, "snapshotInterval": 5000,
                               "cropX1": 100, "cropY1": 200, "cropX2": 300, "cropY2": 400}
    assert by_id["d2;cam"] == {"subscriptionIdentifier": "d2;cam", "modelId": 101, "modelName": "Vehicle Detection",
                               "online": False, "rtspUrl": RTSP, "snapshotUrl": None, "snapshotInterval": None,
                               "cropX1": 0, "cropY1": 0, "cropX2": 0, "cropY2": 0}
    assert by_id["d3;cam"] == {"subscriptionIdentifier": "d3;cam", "modelId": 101, "modelName": "Vehicle Detection",
                               "online": False, "rtspUrl": RTSP, "snapshotUrl": None, "snapshotInterval": None}


async def test_a_restarted_broker_still_echoes_exactly_what_was_sent(tmp_path: Path) -> None:
    state = tmp_path / "pods.json"
    sent = [entry("d1;cam", rtspUrl=RTSP, snapshotUrl=SNAPSHOT, snapshotInterval=5000),
            entry("d2;cam", rtspUrl=RTSP, snapshotUrl=SNAPSHOT, cropX1=0, cropY1=0, cropX2=0, cropY2=0)]
    before = Broker(BrokerSettings(), StartNothing(state_file=state))
    await before.handle(subscription_list(*sent))
    after = Broker(BrokerSettings(), StartNothing(state_file=state))
    await after.restore()
    assert after.subscriptions == before.subscriptions
    assert after.state_report().to_wire()["cameraConnections"] == before.state_report().to_wire()["cameraConnections"]


def test_what_the_broker_echoes_never_replaces_a_pod() -> None:
    with_both = plan([protocol.Subscription.model_validate(entry("d1;cam", rtspUrl=RTSP, snapshotUrl=SNAPSHOT))],
                     BrokerSettings())
    rtsp_only = plan([protocol.Subscription.model_validate(entry("d1;cam", rtspUrl=RTSP))], BrokerSettings())
    assert with_both != rtsp_only, "the echo differs..."
    assert [s.digest() for s in with_both.values()] == [s.digest() for s in rtsp_only.values()], "...the pod not"


# ---- imageDetection: sessionId only with a session; a better answer reaches the backend ---------------

async def test_session_id_is_left_out_without_a_session_and_better_answers_are_sent(broker: Broker) -> None:
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.handle(subscription_list(entry("d1;cam", rtspUrl=RTSP)))
    await broker.on_event(event("d1;cam", visit="a", brand="BMW", body_type="Pickup"))
    await broker.on_event(event("d1;cam", visit="a", update=True, brand="BMW", body_type="SUV"))
    await broker.delivery.flush()
    first, better = backend.of_type("imageDetection")
    assert "sessionId" not in first and "sessionId" not in better
    assert (first["data"]["detection"]["bodyType"], better["data"]["detection"]["bodyType"]) == ("Pickup", "SUV")
    assert first["data"]["detection"]["carModel"] is None, "unknown values stay, as null"

    await broker.handle(protocol.SetSessionId(type="setSessionId", payload=protocol.SessionPayload(
        displayIdentifier="d1", sessionId=7)))
    await broker.on_event(event("d1;cam", visit="b", brand="Ford", body_type="Sedan"))
    await broker.delivery.flush()
    assert backend.of_type("imageDetection")[-1]["sessionId"] == 7


# ---- load figures --------------------------------------------------------------------------------------

def report(usage: PodUsage | None) -> StreamReport:
    return StreamReport(online=True, state="streaming", fps=10, last_frame_at=None, frames=1, reconnects=0,
                        last_error=None, http_port=1, usage=usage)


class Link:
    async def send_text(self, data: str) -> None: ...


async def test_in_a_cluster_the_load_figures_are_the_camera_pods_own() -> None:
    runner = RecordingRunner()
    broker = Broker(BrokerSettings(runner="kubernetes"), runner)
    assert broker.usage() == {"cpuUsage": 0.0, "memoryUsage": 0.0, "gpuUsage": None, "gpuMemoryUsage": None}
    await broker.handle(subscription_list(entry("d1;a", rtspUrl="rtsp://a/1"), entry("d2;b", rtspUrl="rtsp://b/1"),
                                          entry("d3;c", rtspUrl="rtsp://c/1")))
    first, second, silent = sorted(runner.specs)
    gpu = GpuUsage(uuid="GPU-1", utilisation_percent=60, memory_used_bytes=4 << 30, memory_total_bytes=16 << 30)
    for name, usage in ((first, PodUsage(cpu_used_cores=1.5, cpu_limit_cores=2, memory_used_bytes=1 << 30,
                                         memory_limit_bytes=4 << 30, gpus=[gpu])),
                        (second, PodUsage(cpu_used_cores=0.5, cpu_limit_cores=2, memory_used_bytes=1 << 30,
                                          memory_limit_bytes=4 << 30, gpus=[gpu]))):
        broker.pods.update(broker.pods.attach(name, Link()), report(usage))  # type: ignore[arg-type]
    assert silent not in broker.pods.links
    # 2 of 4 cores, 2 of 8 GiB; one GPU shared by both pods is counted once.
    assert broker.usage() == {"cpuUsage": 50.0, "memoryUsage": 25.0, "gpuUsage": 60.0, "gpuMemoryUsage": 25.0}
    assert broker.state_report().cpuUsage == 50.0

    burst = PodUsage(cpu_used_cores=2.8, cpu_limit_cores=2, memory_used_bytes=1 << 30, memory_limit_bytes=4 << 30)
    for name in (first, second):
        broker.pods.update(broker.pods.links[name], report(burst))
    assert broker.usage()["cpuUsage"] == 100.0, "a burst over a pod's limit counts as its limit: never over 100 %"


def test_locally_the_load_figures_are_the_machines() -> None:
    figures = Broker(BrokerSettings(), RecordingRunner()).usage()
    assert 0 <= figures["cpuUsage"] <= 100 and 0 < figures["memoryUsage"] <= 100  # type: ignore[operator]



# ---- where an operator sees the refusals ----------------------------------------------------------------

def test_refusals_and_their_counts_are_served(broker: Broker) -> None:
    from starlette.testclient import TestClient

    from broker.app import build_app

    with TestClient(build_app(broker)) as client, client.websocket_connect("/") as backend:
        backend.receive_json()
        backend.send_json({"type": "setSubscriptionList", "subscriptions": [
            entry("d1;cam", rtspUrl=RTSP), entry("d2;cam", rtspUrl="rtmp://u:S3cret!@cam/x"), "oops"]})
        backend.send_json({"type": "requestState"})
        assert backend.receive_json()["type"] == "stateReport"
        listed = client.get("/refusals").json()
        page = client.get("/metrics").text
        health = client.get("/healthz").json()
    assert [(r["subscriptionIdentifier"], r["reason"]) for r in listed] == [("#2", "not_an_object"),
                                                                             ("d2;cam", "stream")]
    assert "S3cret" not in json.dumps(listed) and "rtmp" in listed[1]["detail"]
    assert 'detector_broker_subscriptions_refused_total{reason="stream"} 1.0' in page
    assert 'detector_broker_subscriptions_refused_total{reason="not_an_object"} 1.0' in page
    assert "detector_broker_refused_entries 2.0" in page and health["refused"] == 2
