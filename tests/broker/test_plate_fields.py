"""Licence plates from the camera pods' fields to the backend: imageDetection, patchSession currentCar."""

from __future__ import annotations

import pytest

from broker import protocol
from broker.service import Broker, detection_from_fields, same_car
from broker.settings import BrokerSettings
from tests.broker.test_service import Backend, RecordingRunner, event, subscription

PLATE = {"brand": "Toyota", "body_type": "Sedan", "license_plate": "AB123CD", "license_plate_confidence": "0.934"}


@pytest.fixture
def broker() -> Broker:
    return Broker(BrokerSettings(backend_grace_period_sec=1.0, event_max_age_sec=1e10), RecordingRunner())


def test_the_plate_and_its_confidence_fill_the_detection() -> None:
    detection = detection_from_fields(PLATE)
    assert (detection.licensePlateText, detection.licensePlateConfidence) == ("AB123CD", pytest.approx(0.934))
    unread = detection_from_fields({"brand": "Toyota", "body_type": "Sedan"})  # no plate read: null, no guess
    assert (unread.licensePlateText, unread.licensePlateConfidence) == (None, None)
    assert '"licensePlateText":null' in protocol.DetectionData(detection=unread, modelId=1, modelName="m") \
        .model_dump_json()


@pytest.mark.parametrize(("before", "after", "same"), [
    (PLATE, {**PLATE, "license_plate_confidence": "0.990"}, True),  # a confidence is no other car
    (PLATE, {**PLATE, "license_plate": "AB123CO"}, False),
    ({"brand": "Toyota", "body_type": "Sedan"}, PLATE, False),  # the plate read since
    (None, PLATE, False),
])
def test_same_car_ignores_confidences(before: dict[str, str | None] | None, after: dict[str, str | None],
                                      same: bool) -> None:
    assert same_car(before, after) is same


async def test_a_plate_read_after_the_session_opened_patches_the_session(broker: Broker) -> None:
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.reconcile([subscription("d1;cam")])
    await broker.on_event(event("d1;cam", visit="a", brand="Toyota", body_type="Sedan"))
    await broker.handle(protocol.SetSessionId(type="setSessionId", payload=protocol.SessionPayload(
        displayIdentifier="d1", sessionId=7)))
    await broker.on_event(event("d1;cam", visit="a", update=True, **PLATE))
    await broker.on_event(event("d1;cam", visit="b", **{**PLATE, "license_plate_confidence": "0.951"}))
    await broker.delivery.flush()
    (detection,) = backend.of_type("imageDetection")  # the same car again in the session: not re-announced
    assert detection["data"]["detection"]["licensePlateText"] is None
    assert backend.of_type("patchSession") == [{"type": "patchSession", "sessionId": 7, "data": {"currentCar": {
        "carBrand": "Toyota", "bodyType": "Sedan", "licensePlateText": "AB123CD"}}}]


async def test_without_a_session_the_better_result_is_a_new_detection_with_the_plate(broker: Broker) -> None:
    backend = Backend()
    broker.connect_backend(backend)  # type: ignore[arg-type]
    await broker.reconcile([subscription("d1;cam")])
    await broker.on_event(event("d1;cam", visit="a", **PLATE))
    await broker.delivery.flush()
    (detection,) = backend.of_type("imageDetection")
    assert detection["data"]["detection"]["licensePlateText"] == "AB123CD"
    assert detection["data"]["detection"]["licensePlateConfidence"] == pytest.approx(0.934)
