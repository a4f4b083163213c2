"""Backend messages: the spec's examples parse; malformed ones are refused with the field named."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from broker import protocol

GOOD_SUBSCRIPTION: dict[str, Any] = {
    "subscriptionIdentifier": "display-001;cam-001", "rtspUrl": "rtsp://user:pw@10.0.0.5/stream1",
    "modelUrl": "https://models.example/gas_station.mpta", "modelId": 7, "modelName": "Car Frontal",
    "cropX1": 0, "cropY1": 0, "cropX2": 320, "cropY2": 240,
}


def sub(**changes: Any) -> dict[str, Any]:
    subscription = {**GOOD_SUBSCRIPTION, **changes}
    return {key: value for key, value in subscription.items() if value is not ...}


def test_every_spec_message_parses() -> None:
    messages = [
        {"type": "setSubscriptionList", "subscriptions": [sub(), sub(subscriptionIdentifier="display-002;cam-001",
                                                                     rtspUrl=..., snapshotUrl="http://cam/snap.jpg",
                                                                     snapshotInterval=500)]},
        {"type": "subscribe", "payload": sub()},
        {"type": "unsubscribe", "payload": {"subscriptionIdentifier": "display-001;cam-001"}},
        {"type": "requestState"},
        {"type": "setSessionId", "payload": {"displayIdentifier": "display-001", "sessionId": 12345}},
        {"type": "setSessionId", "payload": {"displayIdentifier": "display-001", "sessionId": None}},
        {"type": "setProgressionStage", "payload": {"displayIdentifier": "display-001",
                                                    "progressionStage": "car_fueling"}},
        {"type": "patchSessionResult", "payload": {"sessionId": 12345, "success": True, "message": "ok"}},
    ]
    parsed = [protocol.BACKEND_MESSAGE.validate_json(json.dumps(message)) for message in messages]
    assert [type(message).__name__ for message in parsed] == [
        "SetSubscriptionList", "Subscribe", "Unsubscribe", "RequestState", "SetSessionId", "SetSessionId",
        "SetProgressionStage", "PatchSessionResult"]


BAD: list[tuple[str, Any, str]] = [
    ("not json", "{nope", "Invalid JSON"),
    ("json array", "[1,2]", "type"),
    ("no type", {"payload": {}}, "type"),
    ("unknown type", {"type": "launchMissiles"}, "launchMissiles"),
    ("type not a string", {"type": 5}, "type"),
    ("list not a list", {"type": "setSubscriptionList", "subscriptions": "all"}, "subscriptions"),
    ("no identifier", {"type": "subscribe", "payload": sub(subscriptionIdentifier=...)}, "subscriptionIdentifier"),
    ("identifier without ;", {"type": "subscribe", "payload": sub(subscriptionIdentifier="cam-001")}, "exactly one"),
    ("identifier with two ;", {"type": "subscribe", "payload": sub(subscriptionIdentifier="a;b;c")}, "exactly one"),
    ("empty display", {"type": "subscribe", "payload": sub(subscriptionIdentifier=";cam")}, "exactly one"),
    ("empty camera", {"type": "subscribe", "payload": sub(subscriptionIdentifier="disp;")}, "exactly one"),
    ("identifier with slash", {"type": "subscribe", "payload": sub(subscriptionIdentifier="d/../x;cam")},
     "identifiers use"),
    ("identifier too long", {"type": "subscribe", "payload": sub(subscriptionIdentifier="d" * 200 + ";c")},
     "identifiers use"),
    ("both urls", {"type": "subscribe", "payload": sub(snapshotUrl="http://c/s.jpg", snapshotInterval=100)},
     "exactly one of rtspUrl"),
    ("neither url", {"type": "subscribe", "payload": sub(rtspUrl=...)}, "exactly one of rtspUrl"),
    ("snapshot without interval", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="http://c/s.jpg")},
     "snapshotInterval"),
    ("interval too small", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="http://c/s.jpg",
                                                                 snapshotInterval=1)}, "snapshotInterval"),
    ("rtsp url wrong scheme", {"type": "subscribe", "payload": sub(rtspUrl="file:///etc/passwd")}, "rtspUrl"),
    ("snapshot url wrong scheme", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="ftp://c/x",
                                                                        snapshotInterval=100)}, "snapshotUrl"),
    ("partial crop", {"type": "subscribe", "payload": sub(cropX2=...)}, "all four"),
    ("inverted crop", {"type": "subscribe", "payload": sub(cropX1=500, cropX2=100)}, "cropX2 > cropX1"),
    ("negative crop", {"type": "subscribe", "payload": sub(cropX1=-5)}, "cropX1"),
    ("crop not int", {"type": "subscribe", "payload": sub(cropY1="top")}, "cropY1"),
    ("modelId not int", {"type": "subscribe", "payload": sub(modelId="seven")}, "modelId"),
    ("modelId negative", {"type": "subscribe", "payload": sub(modelId=-1)}, "modelId"),
    ("no modelUrl", {"type": "subscribe", "payload": sub(modelUrl=...)}, "modelUrl"),
    ("duplicate identifiers", {"type": "setSubscriptionList", "subscriptions": [sub(), sub()]}, "duplicate"),
    ("subscribe without payload", {"type": "subscribe"}, "payload"),
    ("unsubscribe bad identifier", {"type": "unsubscribe", "payload": {"subscriptionIdentifier": "x"}},
     "exactly one"),
    ("session id not int", {"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": "abc"}},
     "sessionId"),
    ("session without display", {"type": "setSessionId", "payload": {"sessionId": 3}}, "displayIdentifier"),
    ("unknown stage", {"type": "setProgressionStage", "payload": {"displayIdentifier": "d",
                                                                  "progressionStage": "dancing"}}, "progressionStage"),
    ("patch result without success", {"type": "patchSessionResult", "payload": {"sessionId": 1}}, "success"),
    ("payload not an object", {"type": "setSessionId", "payload": [1]}, "payload"),
]


@pytest.mark.parametrize(("message", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_malformed_messages_name_the_problem(message: Any, expected: str) -> None:
    text = message if isinstance(message, str) else json.dumps(message)
    with pytest.raises(pydantic.ValidationError) as caught:
        protocol.BACKEND_MESSAGE.validate_json(text)
    assert expected in str(caught.value)


def test_redacted_subscription_hides_passwords() -> None:
    subscription = protocol.Subscription.model_validate(sub())
    assert subscription.redacted()["rtspUrl"] == "rtsp://user:***@10.0.0.5/stream1"
    assert (subscription.display_id, subscription.camera_id) == ("display-001", "cam-001")


def test_iso_timestamp_has_milliseconds_and_z() -> None:
    assert protocol.iso_timestamp(1752496496.789) == "2025-07-14T12:34:56.789Z"
