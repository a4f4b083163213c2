"""What the console shows: one snapshot of the broker — every subscription with its camera pod's latest report,
the boxes its display saw, its last event and session, the refused entries, the backend link.

Built from what the broker holds (pod reports, subscriptions, sessions, refusals, the delivery queue); never a
URL: stream and model URLs carry passwords, so a camera is named by its identifiers and stream kind only, and
every text that comes from a pod or an entry is passed through the credential redaction once more.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker import protocol
from broker.service import Broker
from detector.contract.pods import CropBox, DetectionEvent, Sighting, StreamReport
from detector.kit.redaction import redact_text

CameraState = Literal["starting", "online", "reconnecting", "failed", "model error"]
_WAITING = {"starting": "loading its model", "connecting": "connecting to the camera"}  # a pod's states, said


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsoleEvent(_View):
    """The subscription's last detection event from its pod (delivered, queued or settled)."""

    brand: str | None = Field(description="the classifier's brand, if any")
    body_type: str | None
    license_plate: str | None = Field(None, description="the visit's licence plate, if a text node read one")
    fields: dict[str, str | None] = Field(description="every classified field")
    captured_at: float = Field(description="epoch seconds of its frame")
    visit: str = Field(description="the visit's id")
    update: bool = Field(description="a better answer for a visit already announced")


class ConsoleCamera(_View):
    identifier: str = Field(description="subscriptionIdentifier: displayId;cameraId")
    display: str
    camera: str
    pod: str | None = Field(description="the camera pod serving it (None: not running)")
    stream: Literal["rtsp", "snapshot"]
    model_id: int
    model_name: str
    state: CameraState
    reason: str | None = Field(description="why it is not online (the pod's last error, a model error)")
    fps: float = Field(ge=0)
    frames: int = Field(ge=0)
    reconnects: int = Field(ge=0)
    frame_age_s: float | None = Field(description="seconds since its latest frame (None: no frame yet)")
    crop: CropBox | None = Field(description="the display's crop, in the full frame's pixels")
    sighting: Sighting | None = Field(description="boxes of the display's latest processed frame, full frame")
    last_event: ConsoleEvent | None
    session_id: int | None = Field(description="the display's session (setSessionId)")
    stage: str | None = Field(description="the display's progression stage")


class ConsoleRefusal(_View):
    entry: str = Field(description="the subscriptionIdentifier as sent, or #position")
    reason: str
    detail: str
    since: float = Field(description="epoch seconds")


class ConsoleBackend(_View):
    connected: bool
    since: float = Field(description="epoch seconds: when it connected, or when it went (the broker's start)")
    backlog: int = Field(ge=0, description="messages queued for the backend")


class ConsoleState(_View):
    now: float = Field(description="the broker's clock, epoch seconds")
    runner: Literal["local", "kubernetes"]
    backend: ConsoleBackend
    cameras: list[ConsoleCamera]
    refused: list[ConsoleRefusal]


def snapshot(broker: Broker, now: float | None = None) -> ConsoleState:
    now = time.time() if now is None else now
    pods = {display.identifier: name for name, spec in broker.runner.running().items()
            for display in spec.subscriptions}
    cameras = [_camera(broker, subscription, pods.get(identifier), now)
               for identifier, subscription in sorted(broker.subscriptions.items())]
    refused = [ConsoleRefusal(entry=r.entry, reason=r.reason, detail=redact_text(r.detail), since=r.at)
               for r in sorted(broker.refusals.values(), key=lambda r: r.entry)]
    backend = ConsoleBackend(connected=broker.backend is not None, since=broker.backend_since,
                             backlog=len(broker.delivery))
    return ConsoleState(now=now, runner=broker.settings.runner, backend=backend, cameras=cameras, refused=refused)


def _camera(broker: Broker, subscription: protocol.Subscription, pod: str | None, now: float) -> ConsoleCamera:
    identifier = subscription.subscriptionIdentifier
    report = broker.pods.status(pod) if pod else None
    state, reason = camera_state(report, identifier)
    display = broker.displays.get(subscription.display_id)
    crop = subscription.crop
    last_frame_at = report.last_frame_at if report else None
    return ConsoleCamera(
        identifier=identifier, display=subscription.display_id, camera=subscription.camera_id, pod=pod,
        stream=subscription.stream_kind, model_id=subscription.modelId, model_name=subscription.modelName,
        state=state, reason=redact_text(reason) if reason else None, fps=report.fps if report else 0.0,
        frames=report.frames if report else 0, reconnects=report.reconnects if report else 0,
        frame_age_s=max(0.0, now - last_frame_at) if last_frame_at is not None else None,
        crop=CropBox(x1=crop[0], y1=crop[1], x2=crop[2], y2=crop[3]) if crop else None,
        sighting=report.sightings.get(identifier) if report else None,
        last_event=_event(broker.last_events.get(identifier)),
        session_id=display.session_id if display else None, stage=display.stage if display else None)


def camera_state(report: StreamReport | None, identifier: str) -> tuple[CameraState, str | None]:
    """The display's state from its pod's latest report, and why it is not online."""
    if report is None:
        return "starting", "no report from its camera pod yet"
    if report.state == "failed":
        return "failed", report.last_error or "the stream failed"
    if identifier in report.display_errors:
        return "model error", report.display_errors[identifier]
    if report.state == "online":
        return "online", None
    why = report.last_error or _WAITING.get(report.state, f"stream {report.state}")
    return ("starting" if report.frames == 0 and report.reconnects == 0 else "reconnecting"), why


def _event(event: DetectionEvent | None) -> ConsoleEvent | None:
    if event is None:
        return None
    return ConsoleEvent(brand=event.fields.get("brand"), body_type=event.fields.get("body_type"),
                        license_plate=event.fields.get("license_plate"), fields=dict(event.fields),
                        captured_at=event.captured_at, visit=event.visit, update=event.update)
