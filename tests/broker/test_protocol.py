"""Backend messages: the spec's examples parse; malformed ones are refused with the field named.

A message that is not a JSON object of a known type, or whose envelope is unusable, is refused whole
(``decoding.BadMessage``); a bad subscription entry is refused on its own (``entries.read``)."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

from broker import decoding, entries, protocol

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
    parsed = [decoding.parse_backend_message(json.dumps(message)) for message in messages]
    assert [type(message).__name__ for message in parsed] == [
        "SetSubscriptionList", "Subscribe", "Unsubscribe", "RequestState", "SetSessionId", "SetSessionId",
        "SetProgressionStage", "PatchSessionResult"]


BAD: list[tuple[str, Any, str]] = [
    ("not json", "{nope", "invalid JSON"),
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
    ("neither url", {"type": "subscribe", "payload": sub(rtspUrl=...)}, "rtspUrl or snapshotUrl"),
    ("null urls", {"type": "subscribe", "payload": sub(rtspUrl=None, snapshotUrl=None)}, "rtspUrl or snapshotUrl"),
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
    # -- strict JSON --------------------------------------------------------------------------------------
    ("NaN", '{"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": NaN}}',
     "NaN is not valid JSON"),
    ("Infinity in an ignored field", '{"type": "requestState", "x": Infinity}', "Infinity is not valid JSON"),
    ("-Infinity", '{"type": "requestState", "x": [-Infinity]}', "-Infinity is not valid JSON"),
    ("duplicate type key", '{"type": "requestState", "type": "setSubscriptionList"}', "duplicate key 'type'"),
    ("duplicate nested key", '{"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": 1, '
     '"sessionId": 2}}', "duplicate key 'sessionId'"),
    ("nested 40 deep", '{"type": "requestState", "payload": ' + "[" * 40 + "]" * 40 + "}", "nested deeper than 32"),
    ("nested 100000 deep", '{"type": "requestState", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "nested deeper than 32"),
    ("empty text", "", "invalid JSON"),
    ("byte order mark", '\ufeff{"type": "requestState"}', "invalid JSON"),
    ("trailing garbage", '{"type": "requestState"} {"type": "requestState"}', "Extra data"),
    ("integer of 5000 digits", '{"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": '
     + "9" * 5000 + "}}", "invalid JSON"),
    ("null", "null", "must be a JSON object"),
    ("number", "42", "must be a JSON object"),
    ("string", '"requestState"', "must be a JSON object"),
    ("type with a line break", {"type": "request\nState"}, "unknown message type"),
    # -- numbers are JSON numbers -------------------------------------------------------------------------
    ("modelId as a string", {"type": "subscribe", "payload": sub(modelId="7")}, "modelId: Input should be a valid"),
    ("modelId true", {"type": "subscribe", "payload": sub(modelId=True)}, "modelId: Input should be a valid"),
    ("modelId beyond int64", {"type": "subscribe", "payload": sub(modelId=2**63)}, "modelId: Input should be less"),
    ("sessionId as a string", {"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": "12"}},
     "payload.sessionId"),
    ("sessionId as a float", {"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": 12.0}},
     "payload.sessionId"),
    ("sessionId beyond int64", {"type": "setSessionId", "payload": {"displayIdentifier": "d", "sessionId": 2**64}},
     "payload.sessionId"),
    ("crop as strings", {"type": "subscribe", "payload": sub(cropX1="0")}, "cropX1: Input should be a valid integer"),
    ("interval as a float", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="http://c/s.jpg",
                                                                  snapshotInterval=500.0)}, "snapshotInterval"),
    ("success as a string", {"type": "patchSessionResult", "payload": {"sessionId": 1, "success": "true"}},
     "payload.success"),
    # -- crops --------------------------------------------------------------------------------------------
    ("crop of zero height", {"type": "subscribe", "payload": sub(cropY1=240, cropY2=240)}, "cropY2 > cropY1"),
    ("crop beyond 65535", {"type": "subscribe", "payload": sub(cropX2=70_000)},
     "cropX2: Input should be less than or equal to 65535"),
    ("crop all negative", {"type": "subscribe", "payload": sub(cropX1=-10, cropY1=-10, cropX2=-1, cropY2=-1)},
     "cropX1: Input should be greater than or equal to 0"),
    # -- identifiers and text -----------------------------------------------------------------------------
    ("identifier with a space", {"type": "subscribe", "payload": sub(subscriptionIdentifier="display 1;cam")},
     "identifiers use"),
    ("identifier with a tab", {"type": "subscribe", "payload": sub(subscriptionIdentifier="d\t;cam")},
     "identifiers use"),
    ("identifier with a trailing newline", {"type": "subscribe", "payload": sub(subscriptionIdentifier="d;cam\n")},
     "identifiers use"),
    ("identifier with a null byte", {"type": "unsubscribe", "payload": {"subscriptionIdentifier": "d;c\u0000"}},
     "identifiers use"),
    ("identifier not ASCII", {"type": "subscribe", "payload": sub(subscriptionIdentifier="dísplay;cam")},
     "identifiers use"),
    ("display with a slash", {"type": "setProgressionStage", "payload": {"displayIdentifier": "../d",
                                                                        "progressionStage": None}},
     "payload.displayIdentifier"),
    ("display with a null byte", {"type": "setSessionId", "payload": {"displayIdentifier": "d\u0000", "sessionId": 1}},
     "payload.displayIdentifier"),
    ("modelName with a null byte", {"type": "subscribe", "payload": sub(modelName="car\u0000s")},
     "modelName: Value error, must not contain control characters"),
    ("modelName with a lone surrogate", {"type": "subscribe", "payload": sub(modelName="car\ud800")},
     "modelName: Input should be a valid string"),
    ("modelName of 10 MB", {"type": "subscribe", "payload": sub(modelName="m" * (10 << 20))},
     "modelName: String should have at most 256 characters"),
    ("patch message with an escape sequence", {"type": "patchSessionResult", "payload": {
        "sessionId": 1, "success": False, "message": "\u001b[31mred"}}, "payload.message"),
    ("subscription that is null", {"type": "setSubscriptionList", "subscriptions": [None]},
     "an entry must be a JSON object, got null"),
    # -- URLs: rtsp(s) and http(s) streams, http(s) models, never a local path ------------------------------
    ("rtmp stream", {"type": "subscribe", "payload": sub(rtspUrl="rtmp://10.0.0.9/live")},
     "rtspUrl scheme 'rtmp' is not allowed; use rtsp:// or rtsps://"),
    ("http as rtspUrl", {"type": "subscribe", "payload": sub(rtspUrl="http://10.0.0.9/live")},
     "rtspUrl scheme 'http' is not allowed"),
    ("rtsp URL without a scheme", {"type": "subscribe", "payload": sub(rtspUrl="10.0.0.9/stream")}, "no scheme"),
    ("rtsp URL with only userinfo", {"type": "subscribe", "payload": sub(rtspUrl="rtsp://admin:S3cr3t@")},
     "rtspUrl has no host"),
    ("rtsp URL with a space", {"type": "subscribe", "payload": sub(rtspUrl="rtsp://cam/a b")}, "spaces or control"),
    ("rtsp URL with a bad port", {"type": "subscribe", "payload": sub(rtspUrl="rtsp://cam:99999/x")},
     "rtspUrl is not a valid URL"),
    ("rtsp URL of one slash", {"type": "subscribe", "payload": sub(rtspUrl="rtsp:/cam/x")}, "rtspUrl has no host"),
    ("file snapshot", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="file:///etc/passwd",
                                                            snapshotInterval=100)},
     "snapshotUrl scheme 'file' is not allowed; use http:// or https://"),
    ("javascript snapshot", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="javascript:alert(1)",
                                                                  snapshotInterval=100)}, "scheme 'javascript'"),
    ("gopher snapshot", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="gopher://h:70/_x",
                                                              snapshotInterval=100)}, "scheme 'gopher'"),
    ("snapshot with an empty host", {"type": "subscribe", "payload": sub(rtspUrl=..., snapshotUrl="http://",
                                                                          snapshotInterval=100)},
     "snapshotUrl has no host"),
    ("file model", {"type": "subscribe", "payload": sub(modelUrl="file:///etc/passwd")},
     "modelUrl scheme 'file' is not allowed; use http:// or https://"),
    ("local model path", {"type": "subscribe", "payload": sub(modelUrl="/var/models/gas_station.mpta")},
     "modelUrl must be an absolute http:// or https:// URL"),
    ("ftp model", {"type": "subscribe", "payload": sub(modelUrl="ftp://models.example/a.mpta")}, "scheme 'ftp'"),
    ("model URL over 2048 characters", {"type": "subscribe", "payload": sub(modelUrl="https://m/" + "a" * 2048)},
     "modelUrl is longer than 2048 characters"),
]


@pytest.mark.parametrize(("message", "expected"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_malformed_messages_name_the_problem(message: Any, expected: str) -> None:
    text = message if isinstance(message, str) else json.dumps(message)
    found = problem(text)
    assert expected in found
    assert "S3cr3t" not in found
    assert "\n" not in found and len(found) < 1400, "one bounded line"


def problem(text: str) -> str:
    """Why ``text`` is refused: the whole message, or each of its subscription entries."""
    try:
        message = decoding.parse_backend_message(text)
    except decoding.BadMessage as exc:
        return str(exc)
    if isinstance(message, protocol.SetSubscriptionList):
        raw = message.subscriptions
    elif isinstance(message, protocol.Subscribe):
        raw = [message.payload]
    else:
        pytest.fail(f"accepted: {text[:200]}")
    checked = entries.read(raw, now=0.0)
    assert checked.refused, f"accepted: {text[:200]}"
    return "; ".join(f"{r.entry}: {r.reason}: {r.detail}" for r in checked.refused)


def test_there_are_at_least_fifty_distinct_bad_messages() -> None:
    assert len(BAD) >= 50
    assert len({case[0] for case in BAD}) == len(BAD)
    assert len({json.dumps(case[1]) for case in BAD}) == len(BAD)


def test_the_message_type_is_named_and_the_union_tag_left_out_of_the_field_path() -> None:
    with pytest.raises(decoding.BadMessage) as caught:
        decoding.parse_backend_message(json.dumps({"type": "setSessionId", "payload": {"displayIdentifier": "d",
                                                                                       "sessionId": "seven"}}))
    assert caught.value.kind == "setSessionId"
    assert caught.value.detail == "payload.sessionId: Input should be a valid integer"


def test_models_refuse_bad_values_without_echoing_them() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        protocol.Subscription.model_validate(sub(rtspUrl="rtmp://admin:S3cr3t@cam/live"))
    assert "S3cr3t" not in str(caught.value) and "admin:***@" not in str(caught.value)


def test_a_subscription_never_shows_its_urls_in_a_repr() -> None:
    subscription = protocol.Subscription.model_validate(sub(modelUrl="https://deploy:S3cr3t@m.example/a.mpta"))
    assert "user:pw" not in repr(subscription) and "S3cr3t" not in repr(subscription)
    assert (subscription.display_id, subscription.camera_id) == ("display-001", "cam-001")


def test_iso_timestamp_has_milliseconds_and_z() -> None:
    assert protocol.iso_timestamp(1752496496.789) == "2025-07-14T12:34:56.789Z"
