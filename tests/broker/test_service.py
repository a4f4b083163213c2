"""Broker behaviour without HTTP: reconcile, sessions, event routing, grace period."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from broker import protocol
from broker.planning import plan, pod_name
from broker.service import Broker
from broker.settings import BrokerSettings
from detector.contract.pods import Ack, DetectionEvent, PodSpec


class RecordingRunner:
    """Keeps the specs it is given; counts the pods it would start and stop."""

    def __init__(self) -> None:
        self.specs: dict[str, PodSpec] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []

    async def apply(self, specs: dict[str, PodSpec]) -> None:
        for name, spec in self.specs.items():
            if name not in specs or specs[name].digest() != spec.digest():
                self.stopped.append(name)
        for name, spec in specs.items():
            if name not in self.specs or self.specs[name].digest() != spec.digest():
                self.started.append(name)
        self.specs = dict(specs)

    async def close(self) -> None:
        await self.apply({})

    def running(self) -> dict[str, PodSpec]:
        return dict(self.specs)


class Backend:
    """A socket that records what is sent to it (or refuses, when ``broken``)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.broken = False

    async def send_text(self, data: str) -> None:
        if self.broken:
            raise ConnectionResetError("gone")
        self.sent.append(json.loads(data))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


def subscription(identifier: str, url: str = "rtsp://cam-1/stream", **extra: Any) -> protocol.Subscription:
    return protocol.Subscription(subscriptionIdentifier=identifier, rtspUrl=url,
                                 modelUrl="https://models.example/m.mpta", modelId=1, modelName="m", **extra)


def event(identifier: str, visit: str = "v1", update: bool = False, **fields: str) -> DetectionEvent:
    return DetectionEvent(id=f"{visit}-{len(fields)}-{update}-{time.monotonic_ns()}", subscription=identifier,
                          captured_at=1752496496.789, fields=fields or {"brand": "Toyota", "body_type": "Sedan"},
                          visit=visit, update=update)


@pytest.fixture
def broker() -> Broker:
    # The fixture events were captured in 2025: no max age here (it has its own tests).
    return Broker(BrokerSettings(backend_grace_period_sec=1.0, event_max_age_sec=1e10), RecordingRunner())


def runner(broker: Broker) -> RecordingRunner:
    assert isinstance(broker.runner, RecordingRunner)
    return broker.runner


async def test_one_pod_per_camera_and_an_identical_list_changes_nothing(broker: Broker) -> None:
    wanted = [subscription("d1;cam"), subscription("d2;cam", cropX1=0, cropY1=0, cropX2=10, cropY2=10),
              subscription("d3;other", url="rtsp://cam-2/stream")]
    await broker.handle(protocol.SetSubscriptionList(type="setSubscriptionList", subscriptions=wanted))
    assert len(runner(broker).started) == 2
    await broker.handle(protocol.SetSubscriptionList(type="setSubscriptionList", subscriptions=wanted))
    assert len(runner(broker).started) == 2 and runner(broker).stopped == []


async def test_display_changes_replace_no_camera_and_a_stream_change_replaces_only_that_one(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam"), subscription("d3;other", url="rtsp://cam-2/stream")])
    await broker.reconcile([subscription("d1;cam", cropX1=0, cropY1=0, cropX2=10, cropY2=10),  # a crop
                            subscription("d2;cam"),  # a display added to a running camera
                            subscription("d3;other", url="rtsp://cam-2/stream")])
    assert runner(broker).stopped == [], "the pods take display changes live"
    await broker.reconcile([subscription("d1;cam", url="rtsp://cam-9/stream"),
                            subscription("d3;other", url="rtsp://cam-2/stream")])
    assert runner(broker).stopped == [pod_name("rtsp://cam-1/stream|None")], "a new stream is a new pod"


async def test_legacy_subscribe_and_unsubscribe_go_through_reconcile(broker: Broker) -> None:
    await broker.handle(protocol.Subscribe(type="subscribe", payload=subscription("d1;cam")))
    await broker.handle(protocol.Subscribe(type="subscribe", payload=subscription("d2;cam")))
    assert set(broker.subscriptions) == {"d1;cam", "d2;cam"}
    await broker.handle(protocol.Unsubscribe(type="unsubscribe",
                                             payload=protocol.UnsubscribePayload(subscriptionIdentifier="d1;cam")))
    assert set(broker.subscriptions) == {"d2;cam"}
    assert [d.identifier for d in next(iter(runner(broker).specs.values())).subscriptions] == ["d2;cam"]


def test_pod_specs_never_name_credentials() -> None:
    specs = plan([subscription("d1;cam", url="rtsp://admin:Secret9@cam/1")], BrokerSettings())
    (name,) = specs
    assert "Secret9" not in name and name.startswith("cam-")


async def test_detections_carry_the_session_and_the_same_car_is_not_re_announced(broker: Broker) -> None:
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.reconcile([subscription("d1;cam")])
    await broker.on_event(event("d1;cam", visit="a"))
    await broker.handle(protocol.SetSessionId(type="setSessionId", payload=protocol.SessionPayload(
        displayIdentifier="d1", sessionId=55)))
    await broker.on_event(event("d1;cam", visit="b"))  # the same car found again during the session
    await broker.on_event(event("d1;cam", visit="a", update=True, brand="Toyota", body_type="SUV"))
    await broker.on_event(event("d1;cam", visit="c", brand="Ford", body_type="Pickup"))
    await broker.delivery.flush()
    detections = backend.of_type("imageDetection")
    assert [d.get("sessionId") for d in detections] == [None, 55]
    assert detections[0]["timestamp"] == "2025-07-14T12:34:56.789Z"
    assert detections[0]["data"]["detection"]["carBrand"] == "Toyota"
    assert detections[1]["data"]["detection"]["carBrand"] == "Ford"
    patches = backend.of_type("patchSession")
    assert patches == [{"type": "patchSession", "sessionId": 55,
                        "data": {"currentCar": {"carBrand": "Toyota", "bodyType": "SUV"}}}]
    assert set(broker.pending_patches) == {55}
    await broker.handle(protocol.PatchSessionResult(type="patchSessionResult", payload=protocol.PatchResultPayload(
        sessionId=55, success=False, message="session closed")))
    assert broker.pending_patches == {}


async def test_duplicate_event_ids_are_delivered_once(broker: Broker) -> None:
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.reconcile([subscription("d1;cam")])
    once = event("d1;cam")
    await broker.on_event(once)
    await broker.delivery.flush()
    await broker.on_event(once)
    await broker.delivery.flush()
    assert len(backend.of_type("imageDetection")) == 1


async def test_events_without_a_backend_are_delivered_on_reconnect_oldest_first(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    await broker.on_event(event("d1;cam", visit="a", brand="Toyota", body_type="Sedan"))
    await broker.on_event(event("d1;cam", visit="b", brand="Ford", body_type="Pickup"))
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    assert [m["data"]["detection"]["carBrand"] for m in backend.of_type("imageDetection")] == ["Toyota", "Ford"]


class PodSocket:
    """A camera pod's end of its link: records the acknowledgements it receives."""

    def __init__(self) -> None:
        self.acked: list[str] = []

    async def send_text(self, data: str) -> None:
        self.acked += Ack.model_validate_json(data).ids


def attach_pod(broker: Broker, name: str = "pod-1") -> PodSocket:
    socket = PodSocket()
    broker.pods.attach(name, socket)  # type: ignore[arg-type]
    return socket


async def test_an_event_is_acknowledged_only_once_it_is_on_the_backend_socket(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    pod = attach_pod(broker)
    first = event("d1;cam", visit="a")
    await broker.on_event(first, "pod-1")
    await broker.delivery.flush()
    assert pod.acked == [], "acknowledged while no backend had it: a broker crash now would lose it"
    await broker.on_event(first, "pod-1")  # the pod's resend while it waits
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    assert pod.acked == [first.id]
    assert len(backend.of_type("imageDetection")) == 1
    await broker.on_event(first, "pod-1")  # a resend racing the acknowledgement: acknowledged, not re-sent
    await broker.delivery.flush()
    assert pod.acked == [first.id, first.id]
    assert len(backend.of_type("imageDetection")) == 1


async def test_a_failed_send_keeps_the_message_for_the_next_backend(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    pod = attach_pod(broker)
    broken = Backend()
    broken.broken = True
    broker.connect_backend(broken)  # type: ignore[arg-type]
    await broker.on_event(event("d1;cam", visit="a"), "pod-1")
    await broker.delivery.flush()
    assert pod.acked == [] and len(broker.delivery) == 1
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    assert len(backend.of_type("imageDetection")) == 1 and len(pod.acked) == 1


async def test_events_past_the_max_age_are_acknowledged_but_not_delivered() -> None:
    broker = Broker(BrokerSettings(event_max_age_sec=60), RecordingRunner())
    await broker.reconcile([subscription("d1;cam")])
    pod = attach_pod(broker)
    stale = event("d1;cam", visit="old")
    fresh = DetectionEvent(**{**event("d1;cam", visit="new").model_dump(), "captured_at": time.time()})
    await broker.on_event(stale, "pod-1")
    await broker.on_event(fresh, "pod-1")
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    assert len(backend.of_type("imageDetection")) == 1
    assert sorted(pod.acked) == sorted([stale.id, fresh.id])  # the pod may forget both
    assert broker.delivery.expired == 1


async def test_a_full_queue_leaves_the_oldest_events_to_their_pods() -> None:
    broker = Broker(BrokerSettings(max_kept_events=2, event_max_age_sec=1e10), RecordingRunner())
    await broker.reconcile([subscription("d1;cam")])
    pod = attach_pod(broker)
    events = [event("d1;cam", visit=v, brand=b, body_type="Sedan") for v, b in (("a", "Audi"), ("b", "BMW"),
                                                                                 ("c", "Citroen"))]
    for each in events:
        await broker.on_event(each, "pod-1")
    assert broker.delivery.evicted == 1 and broker.delivery.state(events[0].id) == "new"
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    await broker.on_event(events[0], "pod-1")  # the pod's resend: delivered now, nothing lost
    await broker.delivery.flush()
    assert sorted(m["data"]["detection"]["carBrand"] for m in backend.of_type("imageDetection")) == \
        ["Audi", "BMW", "Citroen"]
    assert sorted(pod.acked) == sorted(e.id for e in events)


async def test_after_a_restart_kept_events_go_out_oldest_first(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    late = DetectionEvent(**{**event("d1;cam", visit="b", brand="Ford").model_dump(), "captured_at": 1752496500.0})
    early = DetectionEvent(**{**event("d1;cam", visit="a", brand="Audi").model_dump(), "captured_at": 1752496400.0})
    await broker.on_event(late, "pod-2")  # pods resend in no common order
    await broker.on_event(early, "pod-1")
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.delivery.flush()
    assert [m["data"]["detection"]["carBrand"] for m in backend.of_type("imageDetection")] == ["Audi", "Ford"]


async def test_cameras_stop_only_after_the_grace_period(broker: Broker) -> None:
    await broker.reconcile([subscription("d1;cam")])
    broker.backend_lost_at = time.monotonic()
    watcher = asyncio.create_task(broker.watch_grace())
    await asyncio.sleep(0.5)
    assert runner(broker).specs, "stopped before the grace period ended"
    await asyncio.sleep(2.0)
    watcher.cancel()
    assert runner(broker).specs == {}


async def test_pods_are_sent_their_display_subscriptions_on_change_and_on_every_new_link(broker: Broker) -> None:
    from detector.contract.pods import BROKER_MESSAGE, Displays

    pod = Backend()
    await broker.reconcile([subscription("d1;cam")])
    (name,) = runner(broker).specs
    link = broker.pods.attach(name, pod)  # type: ignore[arg-type]
    await broker.send_displays(link)  # what the pod endpoint does on attach
    await broker.reconcile([subscription("d1;cam")])  # nothing changed: nothing sent again
    await broker.reconcile([subscription("d1;cam", cropX1=0, cropY1=0, cropX2=10, cropY2=10), subscription("d2;cam")])
    sent = [BROKER_MESSAGE.validate_python(message) for message in pod.sent]
    assert all(isinstance(message, Displays) for message in sent)
    assert [[d.identifier for d in m.subscriptions] for m in sent] == [["d1;cam"], ["d1;cam", "d2;cam"]]
    assert sent[1].subscriptions[0].crop is not None and sent[1].subscriptions[0].received is None, \
        "the pod gets the crop, not the broker's echo of the entry"
    assert runner(broker).stopped == [], "a display change restarts no pod"

    again = broker.pods.attach(name, Backend())  # type: ignore[arg-type]  # the pod reconnected (or restarted)
    await broker.send_displays(again)
    assert len(again.socket.sent) == 1  # type: ignore[attr-defined]
