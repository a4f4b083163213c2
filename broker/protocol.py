"""Every message between the backend and the worker (shared/spec/protocol.md), as pydantic models.

Backend messages are untrusted (``broker.decoding`` turns raw text into them): numbers must be JSON
numbers (``"7"`` is not an id, ``true`` is not 1), text has no control characters, identifiers are
``<display>;<camera>`` of letters, digits and ``_.:@+-``, and URLs are of the allowed schemes only
(``detector.kit.urls``: rtsp(s) and http(s) streams, http(s) models; never a local path).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from detector.kit.urls import HTTP_SCHEMES, RTSP_SCHEMES, check_url

MAX_MESSAGE_BYTES = 1 << 20
_IDENTIFIER_PART = re.compile(r"[A-Za-z0-9_.:@+-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # C0/C1 controls and lone surrogates
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
INT64_MAX = 2**63 - 1


def _shown(value: str, limit: int = 80) -> str:
    """A user-supplied string as it may appear in an error message: short, escaped, one line."""
    return repr(value[:limit]) + ("…" if len(value) > limit else "")


def _text(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or lone surrogates")
    return value


def _free_text(value: str) -> str:
    if _CONTROL_BUT_LINES.search(value):
        raise ValueError("must not contain control characters (other than tab and line breaks) or lone surrogates")
    return value


def _display_identifier(value: str) -> str:
    if not _IDENTIFIER_PART.fullmatch(value):
        raise ValueError(f"{_shown(value)}: identifiers use letters, digits and _.:@+- (1 to 128)")
    return value


Text = Annotated[str, AfterValidator(_text)]
FreeText = Annotated[str, AfterValidator(_free_text)]
DisplayIdentifier = Annotated[str, AfterValidator(_display_identifier)]
Id = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
SessionId = Annotated[int, Field(strict=True, ge=-INT64_MAX - 1, le=INT64_MAX)]
Pixel = Annotated[int, Field(strict=True, ge=0, le=65535)]


class _Message(BaseModel):
    # Backends add fields over time: unknown keys are ignored on input, never echoed back.
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)  # inputs may hold passwords


def split_identifier(identifier: str) -> tuple[str, str]:
    """``"display-001;cam-001"`` → (``display-001``, ``cam-001``); anything else is rejected."""
    parts = identifier.split(";")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{_shown(identifier)} must be '<displayIdentifier>;<cameraIdentifier>' "
                         "with exactly one ';'")
    for part in parts:
        _display_identifier(part)
    return parts[0], parts[1]


def _loose_url(value: str | None) -> str | None:
    """A URL the subscription carries but does not use (the other of rtspUrl/snapshotUrl): kept as sent, only
    bounded; the one in use is checked in full (``Subscription._consistent``)."""
    if value is not None and (len(value) > 4096 or _CONTROL.search(value)):
        raise ValueError("must be a URL of at most 4096 characters without control characters")
    return value


StreamKind = Literal["rtsp", "snapshot"]


class Subscription(_Message):
    """One entry of ``setSubscriptionList`` (or a legacy ``subscribe`` payload), exactly as the backend sent it.

    The original worker's rules hold: with both URLs, the snapshot is used when ``snapshotInterval`` is given,
    else the RTSP stream; a key sent as ``null`` is a key left out; all four crop values ``0`` mean no crop.
    The values stay as received (``stateReport`` echoes them, the backend compares them with what it sent).
    """

    subscriptionIdentifier: str
    rtspUrl: str | None = Field(None, repr=False)  # URLs carry credentials: never in a repr
    snapshotUrl: str | None = Field(None, repr=False)
    snapshotInterval: int | None = Field(None, strict=True, ge=10, le=3_600_000, description="ms")
    modelUrl: str = Field(repr=False, description="http(s) URL of the .mpta; never a local path from the network")
    modelId: Id
    modelName: Text = Field(max_length=256)
    cropX1: Pixel | None = None
    cropY1: Pixel | None = None
    cropX2: Pixel | None = None
    cropY2: Pixel | None = None

    @field_validator("subscriptionIdentifier")
    @classmethod
    def _identifier(cls, value: str) -> str:
        split_identifier(value)
        return value

    _urls = field_validator("rtspUrl", "snapshotUrl")(_loose_url)

    @field_validator("modelUrl")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_url(value, HTTP_SCHEMES, what="modelUrl")

    @model_validator(mode="after")
    def _consistent(self) -> Subscription:
        if self.snapshotUrl is not None and self.snapshotInterval is not None:
            check_url(self.snapshotUrl, HTTP_SCHEMES, what="snapshotUrl")
        elif self.rtspUrl is not None:
            check_url(self.rtspUrl, RTSP_SCHEMES, what="rtspUrl")
        elif self.snapshotUrl is not None:
            raise ValueError("snapshotUrl needs snapshotInterval (ms), or send rtspUrl")
        else:
            raise ValueError("rtspUrl or snapshotUrl (with snapshotInterval) is required")
        corners = (self.cropX1, self.cropY1, self.cropX2, self.cropY2)
        if any(c is not None for c in corners) and not all(c is not None for c in corners):
            raise ValueError("crop needs all four of cropX1, cropY1, cropX2, cropY2, or none")
        crop = self.crop
        if crop is not None and not (crop[2] > crop[0] and crop[3] > crop[1]):
            raise ValueError("crop must have cropX2 > cropX1 and cropY2 > cropY1 (all four 0 means no crop)")
        return self

    @property
    def display_id(self) -> str:
        return split_identifier(self.subscriptionIdentifier)[0]

    @property
    def camera_id(self) -> str:
        return split_identifier(self.subscriptionIdentifier)[1]

    @property
    def stream_kind(self) -> StreamKind:
        """The original's rule: the snapshot when ``snapshotInterval`` is given, else the RTSP stream."""
        return "snapshot" if self.snapshotUrl is not None and self.snapshotInterval is not None else "rtsp"

    @property
    def stream_url(self) -> str:
        return (self.snapshotUrl if self.stream_kind == "snapshot" else self.rtspUrl) or ""

    @property
    def crop(self) -> tuple[int, int, int, int] | None:
        """(x1, y1, x2, y2), or None: no crop sent, or all four sent as 0."""
        corners = (self.cropX1, self.cropY1, self.cropX2, self.cropY2)
        if any(c is None for c in corners) or not any(corners):
            return None
        return corners  # type: ignore[return-value]

    def connection(self, online: bool) -> CameraConnection:
        """This subscription in ``stateReport``, as the original reports it: the URL of the stream in use (the
        other ``null``), the interval and crops exactly as sent, credentials included (the backend compares
        them with what it sent; this is its own data on its own connection, and the only place they go)."""
        snapshot = self.stream_kind == "snapshot"
        return CameraConnection(
            subscriptionIdentifier=self.subscriptionIdentifier, modelId=self.modelId, modelName=self.modelName,
            online=online, rtspUrl=None if snapshot else self.rtspUrl,
            snapshotUrl=self.snapshotUrl if snapshot else None, snapshotInterval=self.snapshotInterval,
            cropX1=self.cropX1, cropY1=self.cropY1, cropX2=self.cropX2, cropY2=self.cropY2)


class SetSubscriptionList(_Message):
    """The envelope only: each entry is checked on its own (``broker.entries``), so one bad entry refuses
    itself, not the list."""

    type: Literal["setSubscriptionList"]
    subscriptions: list[Any] = Field(max_length=10_000)


class Subscribe(_Message):
    type: Literal["subscribe"]
    payload: Any  # one entry, checked on its own like those of setSubscriptionList


class UnsubscribePayload(_Message):
    subscriptionIdentifier: str

    @field_validator("subscriptionIdentifier")
    @classmethod
    def _identifier(cls, value: str) -> str:
        split_identifier(value)
        return value


class Unsubscribe(_Message):
    type: Literal["unsubscribe"]
    payload: UnsubscribePayload


class RequestState(_Message):
    type: Literal["requestState"]


class SessionPayload(_Message):
    displayIdentifier: DisplayIdentifier
    sessionId: SessionId | None


class SetSessionId(_Message):
    type: Literal["setSessionId"]
    payload: SessionPayload


ProgressionStage = Literal["welcome", "car_fueling", "car_waitpayment", "car_postpayment"]


class ProgressionPayload(_Message):
    displayIdentifier: DisplayIdentifier
    progressionStage: ProgressionStage | None


class SetProgressionStage(_Message):
    type: Literal["setProgressionStage"]
    payload: ProgressionPayload


class PatchResultPayload(_Message):
    sessionId: SessionId
    success: bool = Field(strict=True)
    message: FreeText = Field("", max_length=4096)


class PatchSessionResult(_Message):
    type: Literal["patchSessionResult"]
    payload: PatchResultPayload


BackendMessage = Annotated[
    SetSubscriptionList | Subscribe | Unsubscribe | RequestState | SetSessionId | SetProgressionStage
    | PatchSessionResult,
    Field(discriminator="type"),
]
BACKEND_MESSAGE: TypeAdapter[BackendMessage] = TypeAdapter(BackendMessage)


# ---- worker → backend ---------------------------------------------------------------------------

class _Outgoing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConnection(_Outgoing):
    subscriptionIdentifier: str
    modelId: int
    modelName: str
    online: bool
    rtspUrl: str | None = None
    snapshotUrl: str | None = None
    snapshotInterval: int | None = None
    cropX1: int | None = None
    cropY1: int | None = None
    cropX2: int | None = None
    cropY2: int | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = self.model_dump(mode="json")
        for key in ("cropX1", "cropY1", "cropX2", "cropY2"):
            if wire[key] is None:
                del wire[key]
        return wire


class StateReport(_Outgoing):
    type: Literal["stateReport"] = "stateReport"
    cpuUsage: float
    memoryUsage: float
    gpuUsage: float | None
    gpuMemoryUsage: float | None
    cameraConnections: list[CameraConnection]

    def to_wire(self) -> dict[str, Any]:
        """As the original: GPU figures and the URL/interval keys stay (null when none); crops only when sent."""
        wire = self.model_dump(mode="json", exclude={"cameraConnections"})
        wire["cameraConnections"] = [camera.to_wire() for camera in self.cameraConnections]
        return wire


class _Car(_Outgoing):
    carModel: str | None = None
    carBrand: str | None = None
    carYear: int | None = None
    bodyType: str | None = None
    licensePlateText: str | None = None


class Detection(_Car):
    licensePlateConfidence: float | None = None


class DetectionData(_Outgoing):
    detection: Detection
    modelId: int
    modelName: str


class ImageDetection(_Outgoing):
    type: Literal["imageDetection"] = "imageDetection"
    subscriptionIdentifier: str
    timestamp: str
    sessionId: int | None = None
    data: DetectionData

    def to_json(self) -> str:
        """As the original: ``sessionId`` only while the display has a session (the key left out, not null);
        the detection's unknown values stay as ``null``."""
        return self.model_dump_json(exclude={"sessionId"} if self.sessionId is None else None)


class CurrentCar(_Car):
    licensePlateType: str | None = None


class PatchData(_Outgoing):
    currentCar: CurrentCar


class PatchSession(_Outgoing):
    type: Literal["patchSession"] = "patchSession"
    sessionId: int
    data: PatchData


def iso_timestamp(epoch: float) -> str:
    """``2025-07-14T12:34:56.789Z``"""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
