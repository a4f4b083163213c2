"""Event policy: one announcement per vehicle visit, once its classification is stable."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from camera_pod.inference.detections import Box, Detections
from camera_pod.inference.models import Image
from camera_pod.pipeline.results import FrameResult
from camera_pod.tracking import ObjectTracker

VEHICLE_CLASS = "Car"


@dataclass
class Visit:
    id: str
    track_id: int
    last_seen: float
    streak_fields: dict[str, str] | None = None
    streak: int = 0
    announced: dict[str, str] | None = None
    best_score: float = -1.0
    best_image: Image | None = None
    best_captured_at: float = 0.0
    last_captured_at: float = 0.0


@dataclass(frozen=True)
class AnnouncedVisit:
    """What a restarted pod needs to recognise the car it announced before it died."""

    visit_id: str
    fields: dict[str, str]
    last_seen: float  # capture time (epoch seconds) of the last frame the car was in


@dataclass(frozen=True)
class VisitDecision:
    visit_id: str
    fields: dict[str, str]
    image: Image  # the best frame of the visit so far (the one the actions write)
    captured_at: float
    update: bool  # the visit was announced before with other values


def is_truncated(box: Box, width: int, height: int, margin: int = 2) -> bool:
    x1, y1, x2, y2 = box.xyxy
    return x1 <= margin or y1 <= margin or x2 >= width - margin or y2 >= height - margin


def frame_score(box: Box, width: int, height: int) -> float:
    """Largest un-truncated box wins; a box touching the frame edge counts half; confidence breaks ties."""
    return box.area * (0.5 if is_truncated(box, width, height) else 1.0) + box.confidence


@dataclass
class VisitTracker:
    stable_frames: int = 3
    gap_s: float = 0.7
    method: str = "bytetrack"
    visits: dict[int, Visit] = field(default_factory=dict)
    # The visit announced by this pod's previous life: the first car seen within resume_window_s of it
    # continues that visit (no second announcement) unless its classification differs.
    resume: AnnouncedVisit | None = None
    resume_window_s: float = 30.0
    tracker: ObjectTracker = field(init=False)

    def __post_init__(self) -> None:
        self.tracker = ObjectTracker(self.method)

    def observe(self, result: FrameResult, image: Image, captured_at: float,
                now: float | None = None) -> list[VisitDecision]:
        now = time.monotonic() if now is None else now
        self._forget_departed(now)
        vehicle = self._main_vehicle(result, image)
        if vehicle is None:
            return []
        visit = self.visits.get(vehicle.track_id or 0)
        if visit is None:
            visit = self.visits[vehicle.track_id or 0] = self._new_visit(vehicle.track_id or 0, now, captured_at)
        visit.last_seen, visit.last_captured_at = now, captured_at
        score = frame_score(vehicle, image.shape[1], image.shape[0])
        if score > visit.best_score:
            visit.best_score, visit.best_image, visit.best_captured_at = score, image.copy(), captured_at
        if is_truncated(vehicle, image.shape[1], image.shape[0]):
            return []  # a car half in view is classified from half a car: wait until it is whole
        return self._decide(visit, result.classified_fields() if result.status == "detected" else {})

    def _new_visit(self, track_id: int, now: float, captured_at: float) -> Visit:
        visit = Visit(uuid.uuid4().hex, track_id, now)
        resumed, self.resume = self.resume, None
        if resumed is not None and 0 <= captured_at - resumed.last_seen <= self.resume_window_s:
            visit.id, visit.announced = resumed.visit_id, dict(resumed.fields)
        return visit

    def announced(self) -> AnnouncedVisit | None:
        """The most recently seen visit that was announced (what to remember across a restart)."""
        visits = [v for v in self.visits.values() if v.announced is not None]
        latest = max(visits, key=lambda v: v.last_captured_at, default=None)
        if latest is None or latest.announced is None:
            return None
        return AnnouncedVisit(latest.id, dict(latest.announced), latest.last_captured_at)

    def _main_vehicle(self, result: FrameResult, image: Image) -> Box | None:
        root = result.root
        if root is None or root.detections is None:
            self.tracker.update(Detections.empty(()), image)
            return None
        detections = root.detections
        if VEHICLE_CLASS in detections.names:
            detections = detections.filter(detections.class_id == detections.names.index(VEHICLE_CLASS))
        tracked = self.tracker.update(detections, image).boxes()
        return max(tracked, key=lambda box: box.area, default=None)

    def _decide(self, visit: Visit, fields: dict[str, str]) -> list[VisitDecision]:
        if not fields:
            return []
        if fields == visit.streak_fields:
            visit.streak += 1
        else:
            visit.streak_fields, visit.streak = fields, 1
        if visit.streak < self.stable_frames or fields == visit.announced or visit.best_image is None:
            return []
        update = visit.announced is not None
        visit.announced = dict(fields)
        return [VisitDecision(visit.id, dict(fields), visit.best_image, visit.best_captured_at, update)]

    def _forget_departed(self, now: float) -> None:
        departed = [t for t, visit in self.visits.items() if now - visit.last_seen > self.gap_s]
        for track_id in departed:
            del self.visits[track_id]
        if departed and not self.visits:
            # The tracker would re-find an old track id for the next car; a visit is over, so is its track.
            self.tracker = ObjectTracker(self.method)

