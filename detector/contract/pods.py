"""What a camera pod is asked to run, and the messages it exchanges with the broker."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from detector.kit.urls import HTTP_SCHEMES, RTSP_SCHEMES, check_url


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)  # URLs hold credentials


class CropBox(_Closed):
    x1: int = Field(ge=0)
    y1: int = Field(ge=0)
    x2: int = Field(ge=1)
    y2: int = Field(ge=1)


class ReceivedEntry(_Closed):
    """The backend's subscription entry as it sent it (credentials included), kept only so that stateReport
    can echo it after a broker restart: it never reaches a resource, a log, a metric or a page."""

    rtspUrl: str | None = Field(None, repr=False)
    snapshotUrl: str | None = Field(None, repr=False)
    snapshotInterval: int | None = None
    modelUrl: str = Field(repr=False)
    cropX1: int | None = None
    cropY1: int | None = None
    cropX2: int | None = None
    cropY2: int | None = None


class DisplaySubscription(_Closed):
    """One display's view of the camera: its own crop, model and events."""

    identifier: str
    model_url: str = Field(repr=False)
    model_id: int
    model_name: str
    crop: CropBox | None = None
    received: ReceivedEntry | None = Field(None, repr=False, description="for the broker's echo; pods ignore it")


class StreamSpec(_Closed):
    url: str = Field(min_length=1, repr=False)  # credentials: never in a repr
    kind: Literal["rtsp", "snapshot", "file"]
    snapshot_interval_ms: int | None = None

    @model_validator(mode="after")
    def _url_fits_kind(self) -> StreamSpec:
        """rtsp(s):// for rtsp, http(s):// for snapshot; a local path only for ``file`` (local tools)."""
        if self.kind != "file":
            check_url(self.url, RTSP_SCHEMES if self.kind == "rtsp" else HTTP_SCHEMES, what=f"{self.kind} stream URL")
        return self


class PodSpec(_Closed):
    """Everything one camera pod needs; a change of any field but ``subscriptions`` replaces the pod."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    stream: StreamSpec
    subscriptions: list[DisplaySubscription] = Field(min_length=1)
    broker_url: str = Field(description="ws://host:port/internal/pods/<name>")
    target_fps: float | None = None
    poll_interval_ms: int = Field(0, ge=0, le=3_600_000,
                                  description="least time between two frames processed for a display; 0: none")
    reconnect_interval_sec: float = 30.0
    max_retries: int = -1
    event_mode: Literal["visit", "frame"] = "visit"
    stable_frames: int = Field(3, ge=1, description="agreeing frames before a visit is announced, at 5 frames/s; "
                                                    "the same span of time at the stream's measured frame rate")
    visit_gap_s: float = Field(0.7, gt=0, description="processed frames without the car (two at least) spanning "
                                                      "this long end its visit; the next car is a new one")

    def digest(self) -> str:
        """What the pod itself is given: a change of it replaces the pod. Its display subscriptions (crops,
        models, displays added or removed) are not in it: a running pod takes those live (``Displays``)."""
        running = self.model_dump_json(exclude={"subscriptions"})
        return hashlib.sha256(running.encode()).hexdigest()[:16]

    def displays(self) -> Displays:
        """The live part, as sent to the pod (without the broker's echo of what the backend sent)."""
        return Displays(subscriptions=[d.model_copy(update={"received": None}) for d in self.subscriptions])


# ---- pod → broker ---------------------------------------------------------------------------------

class DetectionEvent(_Closed):
    kind: Literal["detection"] = "detection"
    id: str = Field(min_length=1, max_length=64)
    subscription: str
    captured_at: float
    fields: dict[str, str | None] = Field(description="classifier results: brand, body_type, ...")
    visit: str = Field(description="one id per vehicle visit")
    update: bool = Field(False, description="a better result for a visit already announced")


class GpuUsage(_Closed):
    uuid: str = Field(max_length=128)
    utilisation_percent: float = Field(ge=0, le=100)
    memory_used_bytes: int = Field(ge=0)
    memory_total_bytes: int = Field(ge=0)


class PodUsage(_Closed):
    """What a camera pod itself uses, against what it may use (a cluster's stateReport adds these up)."""

    cpu_used_cores: float = Field(ge=0)
    cpu_limit_cores: float = Field(gt=0, description="its cgroup CPU quota, else the CPUs it may run on")
    memory_used_bytes: int = Field(ge=0, description="resident memory of the pod's process")
    memory_limit_bytes: int = Field(gt=0, description="its cgroup memory limit, else the machine's memory")
    gpus: list[GpuUsage] = Field(default_factory=list, description="the GPUs it can see (its assigned ones)")


MAX_SIGHTED_BOXES = 20


class SightedBox(_Closed):
    """One box of a display's detector, in the full frame's pixels (a crop's offset added)."""

    x1: int
    y1: int
    x2: int
    y2: int
    label: str = Field(max_length=64)
    confidence: float = Field(ge=0, le=1)


class Sighting(_Closed):
    """The root detector's boxes on the latest frame a display processed (the console draws them)."""

    captured_at: float
    boxes: list[SightedBox] = Field(default_factory=list, max_length=MAX_SIGHTED_BOXES,
                                    description="the most confident first")


class StreamReport(_Closed):
    # Fields a newer pod adds are ignored, not refused: a broker upgraded after its pods still reads them.
    model_config = ConfigDict(extra="ignore")

    kind: Literal["status"] = "status"
    online: bool
    state: str
    fps: float
    last_frame_at: float | None
    frames: int
    reconnects: int
    last_error: str | None
    http_port: int
    usage: PodUsage | None = None
    display_errors: dict[str, str] = Field(default_factory=dict, description="by display identifier: a model "
                                           "that does not load, or a new one kept out (the old one runs)")
    sightings: dict[str, Sighting] = Field(default_factory=dict, description="by display identifier: the boxes "
                                           "of its latest processed frame")
    started_at: float | None = Field(None, description="when the pod's process started (Unix time): a new value "
                                     "is a restart")


class PodHealth(_Closed):
    """``GET /healthz`` of a camera pod (probes use the status code; the operator reads the report)."""

    ok: bool
    detail: str
    report: StreamReport


PodMessage = Annotated[DetectionEvent | StreamReport, Field(discriminator="kind")]
POD_MESSAGE: TypeAdapter[PodMessage] = TypeAdapter(PodMessage)


# ---- broker → pod ---------------------------------------------------------------------------------

class Ack(_Closed):
    """These events are done with: delivered to the backend, or settled without a message (a duplicate, an
    event past its max age, a car already announced); the pod may forget them."""

    kind: Literal["ack"] = "ack"
    ids: list[str]


class Displays(_Closed):
    """The display subscriptions the pod serves now (all of them): applied live, without a new decode.

    Sent on every change and whenever the pod's link is (re)attached, so a pod restarted or a broker
    restarted always ends up with the broker's current list; the pod's environment only starts it."""

    kind: Literal["displays"] = "displays"
    subscriptions: list[DisplaySubscription] = Field(min_length=1)


BrokerMessage = Annotated[Ack | Displays, Field(discriminator="kind")]
BROKER_MESSAGE: TypeAdapter[BrokerMessage] = TypeAdapter(BrokerMessage)
