"""Steps and checks shared by the embedded and the cluster conformance tests (plain helpers)."""

from __future__ import annotations

from typing import Any

from tests.conformance.validation import ValidatingBackend

STREAM_KEYS = ("rtspUrl", "snapshotUrl", "snapshotInterval")
CROP_KEYS = ("cropX1", "cropY1", "cropX2", "cropY2")


def entries(backend: ValidatingBackend, since: float = 0.0) -> dict[str, dict[str, Any]] | None:
    """The latest stateReport's cameraConnections by subscriptionIdentifier (None before any report)."""
    reports = backend.of_type("stateReport", since)
    if not reports:
        return None
    return {entry["subscriptionIdentifier"]: entry for entry in reports[-1]["cameraConnections"]}


def listed(backend: ValidatingBackend, since: float = 0.0) -> set[str]:
    return set(entries(backend, since) or {})


async def reset(backend: ValidatingBackend, timeout: float = 30) -> None:
    """Test setup, not part of any flow: an empty list, so the shared worker starts from no camera."""
    await backend.send({"type": "setSubscriptionList", "subscriptions": []})
    await backend.until(lambda: entries(backend) == {}, timeout)


def in_use(sent: dict[str, Any]) -> str:
    """The URL key the original uses for a subscription: the snapshot when snapshotUrl and snapshotInterval
    are given, else the RTSP stream (app.py subscribe_internal; protocol.md)."""
    return "snapshotUrl" if sent.get("snapshotUrl") and sent.get("snapshotInterval") else "rtspUrl"


def echo_mismatches(sent: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    """How a heartbeat entry differs from the subscription the backend sent (exact values, credentials in).

    - modelId, modelName: exactly as sent;
    - the URL in use, and snapshotInterval when the snapshot is in use: exactly as sent;
    - the URL not in use: as sent, or null/absent (the original reports the one in use and null for the other);
    - crops: exactly as sent (all four 0 included: the original echoes every crop that is not None); a crop
      sent as null or left out is absent (the original adds crop keys only when not None);
    - a key sent as null is the same as a key left out.
    """
    wrong = []
    for key in ("modelId", "modelName"):
        if entry.get(key) != sent.get(key):
            wrong.append(f"{key}: sent {sent.get(key)!r}, heartbeat {entry.get(key)!r}")
    used = in_use(sent)
    if entry.get(used) != sent[used]:
        wrong.append(f"{used} (in use): sent {sent[used]!r}, heartbeat {entry.get(used)!r}")
    other = "rtspUrl" if used == "snapshotUrl" else "snapshotUrl"
    if entry.get(other) is not None and entry.get(other) != sent.get(other):
        wrong.append(f"{other} (not in use): sent {sent.get(other)!r}, heartbeat {entry.get(other)!r}")
    if used == "snapshotUrl" and entry.get("snapshotInterval") != sent["snapshotInterval"]:
        wrong.append(f"snapshotInterval: sent {sent['snapshotInterval']!r}, heartbeat "
                     f"{entry.get('snapshotInterval')!r}")
    for key in CROP_KEYS:
        if sent.get(key) is None:
            if key in entry:
                wrong.append(f"{key}: sent {'null' if key in sent else 'nothing'}, heartbeat has {entry[key]!r}")
        elif entry.get(key) != sent[key] or type(entry.get(key)) is not type(sent[key]):
            wrong.append(f"{key}: sent {sent[key]!r}, heartbeat {entry.get(key, '<absent>')!r}")
    return wrong


def detections_of(backend: ValidatingBackend, identifier: str, since: float = 0.0) -> list[dict[str, Any]]:
    return [m for m in backend.of_type("imageDetection", since) if m["subscriptionIdentifier"] == identifier]


def session_ids(messages: list[dict[str, Any]]) -> list[Any]:
    """Each detection's sessionId, or the string "<absent>" where the key is left out."""
    return [m.get("sessionId", "<absent>") for m in messages]
