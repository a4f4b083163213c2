"""Event policy: one announcement per vehicle visit, once its classification is stable, and updates when it improves.

Everything here runs on the frames' capture times and on processed frames, never on the wall clock: a visit
must hold at every cadence the backend may ask for (snapshots every 100 ms to 60 s, RTSP at any rate, a low
``target_fps``) and through stalls (a slow action, an overloaded machine, Redis down).

- **Cadence.** The stream's real frame interval is measured (the median of the last capture-time deltas between
  processed frames, so one stall does not move it); the configured interval is only the prior until then.
- **Departure.** A visit ends on evidence: at least ``GONE_FRAMES`` consecutive processed frames that do not show
  its car, spanning at least ``gap_s`` of capture time. Frames that were never processed are no evidence, so a
  stall, a slow action or a 30 s snapshot interval never ends a visit.
- **Stability.** ``stable_frames`` is the number of agreeing frames at the reference cadence (5 frames/s); the
  agreement it asks for is a span of time, so it takes more frames at 25 frames/s and fewer when frames are
  seconds apart, never more than fit in ``MAX_AGREE_WAIT_S`` (a 30 s snapshot camera announces on one frame).
- **The answer.** Each field is a vote over the visit's whole (un-truncated) frames, weighted by classifier
  confidence and box size (the largest, clearest views count most). The first announcement waits until the
  car has settled (its box steady over the agreeing frames: not still driving in or growing) when the cadence
  allows; a later change of the vote's winner is announced as an ``update`` of the same visit.
- **Text.** A text node's reads (a licence plate: normalised, each at or above the node's ``minTextConfidence``)
  are a vote of their own over the same frames, weighted by confidence and box size, and never hold back an
  announcement: the visit carries the winner when it has more than half of the read weight, else no text (null).
  A text appearing or changing later (by ``UPDATE_MARGIN``) is an ``update`` at once, with no agreeing frames
  asked of it; its confidence (the weighted mean of its reads') travels beside it as ``<field>_confidence``.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import deque
from dataclasses import dataclass, field

from camera_pod.inference.detections import Box, BoxXYXY, Detections
from camera_pod.inference.models import Image
from camera_pod.ocr.reading import NOTHING, TextRead
from camera_pod.pipeline.results import FrameResult, confidence_field
from camera_pod.tracking import ObjectTracker

VEHICLE_CLASS = "Car"
REFERENCE_INTERVAL_S = 0.2  # ``stable_frames`` counts frames this far apart
FAST_INTERVAL_S = 0.04  # assumed (25 frames/s: the strictest) until a stream's interval is known
MAX_AGREE_WAIT_S = 10.0  # agreeing frames never need to span more than this
GONE_FRAMES = 2  # consecutive processed frames without the car before its visit can end
SETTLED_IOU = 0.8  # the box over the agreeing frames overlaps this much: the car is not arriving any more
SETTLE_WAIT_S = 3.0  # a car that never settles (drive-through, shaking camera) is announced after this
SAME_PLACE_IOU = 0.7  # a car back at the same place after frames without it is the same car
UPDATE_MARGIN = 1.5  # a value replaces an announced one when its votes outweigh it this much
TEXT_MAJORITY = 0.5  # a text is the visit's when its reads outweigh every other read of the field together
PENDING_PATIENCE_S = 10.0  # a car not announced after this (cut by the frame edge, unclassifiable) stops being pending
RECENT_FRAMES = 64


@dataclass
class Cadence:
    """The stream's real frame interval: median of the last capture-time deltas of processed frames."""

    prior_s: float | None = None
    deltas: deque[float] = field(default_factory=lambda: deque(maxlen=9))
    last_at: float | None = None

    def tick(self, captured_at: float) -> None:
        if self.last_at is not None and captured_at > self.last_at:
            self.deltas.append(captured_at - self.last_at)
        if self.last_at is None or captured_at > self.last_at:
            self.last_at = captured_at

    @property
    def interval_s(self) -> float:
        if self.deltas:
            return statistics.median(self.deltas)
        return self.prior_s or FAST_INTERVAL_S


def agreeing_frames(stable_frames: int, interval_s: float) -> int:
    """Frames that must agree at this interval: ``stable_frames`` at 0.2 s, the same span of time elsewhere.

    >>> [agreeing_frames(3, s) for s in (0.04, 0.1, 0.2, 1.0, 5.0, 30.0)]
    [11, 5, 3, 2, 2, 1]
    """
    span_s = (stable_frames - 1) * REFERENCE_INTERVAL_S
    wanted = math.ceil(span_s / interval_s - 1e-9) + 1
    fits = math.floor(MAX_AGREE_WAIT_S / interval_s + 1e-9) + 1
    return max(1, min(wanted, fits))


@dataclass(frozen=True)
class Sighting:
    """One whole (un-truncated) frame of a visit's car with its classifications."""

    captured_at: float
    box: Box
    fields: dict[str, str]


@dataclass
class TextTally:
    """The reads of one text value in a visit: their weight (size x confidence) and size."""

    weight: float = 0.0
    size: float = 0.0

    @property
    def confidence(self) -> float:
        return self.weight / self.size if self.size else 0.0


@dataclass
class Visit:
    id: str
    first_seen: float  # capture times (epoch seconds)
    last_seen: float
    last_box: Box
    tracks: set[int] = field(default_factory=set)
    others: set[int] = field(default_factory=set)  # track ids seen in a frame together with this car
    misses: int = 0  # consecutive processed frames without this car
    recent: deque[Sighting] = field(default_factory=lambda: deque(maxlen=RECENT_FRAMES))
    votes: dict[str, dict[str, float]] = field(default_factory=dict)
    reads: dict[str, dict[str, TextTally]] = field(default_factory=dict)  # text field -> value -> its tally
    text_nodes: dict[str, str] = field(default_factory=dict)  # text field -> the node that reads it
    whole_since: float | None = None
    announced: dict[str, str] | None = None
    best_score: float = -1.0
    best_image: Image | None = None
    best_captured_at: float = 0.0

    def vote(self, sighting: Sighting, confidences: dict[str, float]) -> None:
        weight = max(1.0, float(sighting.box.area))
        for name, value in sighting.fields.items():
            ballot = self.votes.setdefault(name, {})
            ballot[value] = ballot.get(value, 0.0) + weight * confidences.get(name, 1.0)

    def read(self, box: Box, reads: dict[str, TextRead]) -> None:
        size = max(1.0, float(box.area))
        for name, read in reads.items():
            if read.text is None or read.confidence is None:
                continue
            tally = self.reads.setdefault(name, {}).setdefault(read.text, TextTally())
            tally.weight += size * read.confidence
            tally.size += size

    def texts(self) -> dict[str, str]:
        """Every text field's winner: held by more than ``TEXT_MAJORITY`` of the read weight; an announced text
        stays until another outweighs it by ``UPDATE_MARGIN`` (as ``answer``)."""
        held = self.announced or {}
        winners = {}
        for name, tallies in self.reads.items():
            best = max(tallies, key=lambda value: tallies[value].weight)
            kept = held.get(name)
            if kept in tallies:
                if best != kept and tallies[best].weight < UPDATE_MARGIN * tallies[kept].weight:
                    best = kept
            elif tallies[best].weight <= TEXT_MAJORITY * sum(tally.weight for tally in tallies.values()):
                continue  # no majority (yet): no text, or the one announced before stays
            winners[name] = best
        return winners

    def text_confidences(self, texts: dict[str, str]) -> dict[str, str]:
        """``<field>_confidence`` of each text: the weighted mean confidence of the reads that agree with it."""
        return {confidence_field(name): f"{self.reads[name][value].confidence:.3f}"
                for name, value in texts.items() if value in self.reads.get(name, {})}

    def answer(self) -> dict[str, str]:
        """Every field's winner of the vote (ties go to the value voted for first); an announced value stays
        until another outweighs it by ``UPDATE_MARGIN``, so near-ties do not flap between updates."""
        held = self.announced or {}
        answer = {}
        for name, ballot in self.votes.items():
            best = max(ballot, key=lambda value: ballot[value])
            kept = held.get(name)
            if kept in ballot and best != kept and ballot[best] < UPDATE_MARGIN * ballot[kept]:
                best = kept
            answer[name] = best
        return answer

    def streak(self, fields: dict[str, str]) -> int:
        count = 0
        for sighting in reversed(self.recent):
            if sighting.fields != fields:
                break
            count += 1
        return count


@dataclass(frozen=True)
class AnnouncedVisit:
    """What a restarted pod needs to recognise the car it announced before it died."""

    visit_id: str
    fields: dict[str, str]
    last_seen: float  # capture time (epoch seconds) of the last frame the car was in
    box: BoxXYXY | None = None  # where the car was then (None: remembered by an older version)


@dataclass(frozen=True)
class VisitDecision:
    visit_id: str
    fields: dict[str, str]
    image: Image  # the best frame of the visit so far (the one the actions write)
    captured_at: float
    update: bool  # the visit was announced before with other values
    reads: dict[str, TextRead] = field(default_factory=dict)  # the voted texts by node (NOTHING: no majority)


def is_truncated(box: Box, width: int, height: int, margin: int | None = None) -> bool:
    """Touches the frame edge; the margin grows with the frame (detectors stop a few pixels short of the edge)."""
    mx = max(2, round(0.015 * width)) if margin is None else margin
    my = max(2, round(0.015 * height)) if margin is None else margin
    x1, y1, x2, y2 = box.xyxy
    return x1 <= mx or y1 <= my or x2 >= width - mx or y2 >= height - my


def frame_score(box: Box, width: int, height: int) -> float:
    """Largest un-truncated box wins; a box touching the frame edge counts half; confidence breaks ties."""
    return box.area * (0.5 if is_truncated(box, width, height) else 1.0) + box.confidence


def iou(a: Box, b: Box) -> float:
    ax1, ay1, ax2, ay2 = a.xyxy
    bx1, by1, bx2, by2 = b.xyxy
    inter = max(0, min(ax2, bx2) - max(ax1, bx1)) * max(0, min(ay2, by2) - max(ay1, by1))
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def classified(result: FrameResult) -> tuple[dict[str, str], dict[str, float]]:
    """The frame's classifier results and their confidences, by result field."""
    if result.status != "detected":
        return {}, {}
    fields, confidences = {}, {}
    for node in result.all_nodes().values():
        if node.task != "ocr" and node.result_field and node.class_name is not None:
            fields[node.result_field] = node.class_name
            confidences[node.result_field] = node.confidence if node.confidence is not None else 1.0
    return fields, confidences


def text_reads(result: FrameResult) -> tuple[dict[str, TextRead], dict[str, str]]:
    """The frame's text reads by result field (only reads of a text), and which node reads each field (every text
    node that ran, also those that read nothing: the visit's write then knows there is nothing to read again)."""
    if result.status != "detected":
        return {}, {}
    reads, nodes = {}, {}
    for node in result.all_nodes().values():
        if node.task == "ocr" and node.result_field and node.reading is not None:
            nodes[node.result_field] = node.model_id
            if node.reading.text is not None:
                reads[node.result_field] = node.reading
    return reads, nodes


@dataclass
class VisitTracker:
    stable_frames: int = 3
    gap_s: float = 0.7  # frames without the car must span at least this (and be at least GONE_FRAMES)
    method: str = "bytetrack"
    expected_interval_s: float | None = None  # the configured cadence: a prior until it is measured
    visits: dict[str, Visit] = field(default_factory=dict)
    # The visit announced by this pod's previous life: the first car seen within resume_window_s of it
    # continues that visit (no second announcement) unless its classification differs.
    resume: AnnouncedVisit | None = None
    resume_window_s: float = 30.0
    tracker: ObjectTracker = field(init=False)
    cadence: Cadence = field(init=False)
    _frame_size: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.tracker = ObjectTracker(self.method)
        self.cadence = Cadence(self.expected_interval_s)

    def observe(self, result: FrameResult, image: Image, captured_at: float) -> list[VisitDecision]:
        """One processed frame. A frame the pipeline could not look at (no detector result) is no evidence."""
        root = result.root
        if root is None or root.detections is None:
            return []
        self.cadence.tick(captured_at)
        self._frame_size = (image.shape[1], image.shape[0])
        cars = self._cars(root.detections)
        tracked = self.tracker.update(cars, image).boxes()
        seen = self._mark_seen(tracked, captured_at)
        main = max(cars.boxes(), key=lambda box: box.area, default=None)
        visit = None
        if main is not None:
            track = next((box.track_id for box in tracked if box.xyxy == main.xyxy), None)
            visit = self._visit_of(main, track, seen, captured_at)
            seen.add(visit.id)
            self._sighted(visit, main, captured_at)
        self._forget_departed(seen, captured_at)
        if visit is None or main is None:
            return []
        return self._observe_car(visit, main, result, image, captured_at)

    def hold(self, captured_at: float) -> None:
        """A frame the change gate skipped: the picture is the last processed frame's, so every car seen in that
        frame is still there (it never counts as a frame without its car). The stream's cadence is measured on it."""
        self.cadence.tick(captured_at)
        for visit in self.visits.values():
            if visit.misses == 0:
                visit.last_seen = max(visit.last_seen, captured_at)

    def needs_every_frame(self, captured_at: float) -> bool:
        """Whether a visit is in progress: a car not announced yet (for ``PENDING_PATIENCE_S`` at most), or one
        missing from the last processed frame whose visit has not ended. The change gate runs the detector then."""
        return any(visit.misses or (visit.announced is None and captured_at - visit.first_seen < PENDING_PATIENCE_S)
                   for visit in self.visits.values())

    @staticmethod
    def _cars(detections: Detections) -> Detections:
        if VEHICLE_CLASS in detections.names:
            return detections.filter(detections.class_id == detections.names.index(VEHICLE_CLASS))
        return detections

    def _mark_seen(self, tracked: list[Box], captured_at: float) -> set[str]:
        """The visits whose track ids are in this frame; each learns which other tracks stood beside it.

        After frames without its car, a visit keeps a track only where the car is back at the same place: across
        frames seconds apart the tracker readily gives a leaving car's id to the next car coming in.
        """
        ids = {box.track_id for box in tracked if box.track_id is not None}
        seen = set()
        for visit in self.visits.values():
            mine = [box for box in tracked if box.track_id in visit.tracks]
            if mine and visit.misses and not any(self._same_place(box, visit.last_box) for box in mine):
                visit.tracks -= {box.track_id for box in mine if box.track_id is not None}
                mine = []
            if mine:
                seen.add(visit.id)
                visit.others |= ids - visit.tracks
                self._sighted(visit, max(mine, key=lambda box: box.area), captured_at)
        return seen

    @staticmethod
    def _sighted(visit: Visit, box: Box, captured_at: float) -> None:
        visit.misses, visit.last_box = 0, box
        visit.last_seen = max(visit.last_seen, captured_at)

    def _visit_of(self, main: Box, track: int | None, seen: set[str], captured_at: float) -> Visit:
        """The main car's visit: its track's, else the visit the tracker lost it from, else a new one.

        The tracker loses a car it cannot follow (frames seconds apart, a stall while it drove in): the most
        recently seen visit not in this frame continues when no frame without it came between, or when the car
        is back at the same place. A track once seen beside that visit's car is another car.
        """
        for visit in self.visits.values():
            if track is not None and track in visit.tracks:
                return visit
        lost = [v for v in self.visits.values() if v.id not in seen and (track is None or track not in v.others)]
        candidate = max(lost, key=lambda v: v.last_seen, default=None)
        if candidate is not None and (candidate.misses == 0 or self._same_place(main, candidate.last_box)):
            visit = candidate
        else:
            visit = self._new_visit(main, captured_at)
        if track is not None:
            visit.tracks.add(track)
        return visit

    def _same_place(self, box: Box, before: Box) -> bool:
        """Overlapping well, and not at the frame edge, where one car leaves as the next comes in."""
        width, height = self._frame_size
        if is_truncated(box, width, height) or is_truncated(before, width, height):
            return False
        return iou(box, before) >= SAME_PLACE_IOU

    def _new_visit(self, box: Box, captured_at: float) -> Visit:
        visit = Visit(uuid.uuid4().hex, captured_at, captured_at, box)
        resumed, self.resume = self.resume, None
        if resumed is not None and self._is_resumed_car(resumed, box, captured_at):
            visit.id, visit.announced = resumed.visit_id, dict(resumed.fields)
        self.visits[visit.id] = visit
        return visit

    def _is_resumed_car(self, resumed: AnnouncedVisit, box: Box, captured_at: float) -> bool:
        """The first car after a restart is the one announced before it only if it is seen soon after, at the
        same place: the next car driving in (the announced one had left meanwhile) is a visit of its own."""
        if not 0 <= captured_at - resumed.last_seen <= self.resume_window_s:
            return False
        return resumed.box is None or self._same_place(box, Box(VEHICLE_CLASS, 1.0, resumed.box))

    def _observe_car(self, visit: Visit, car: Box, result: FrameResult, image: Image,
                     captured_at: float) -> list[VisitDecision]:
        height, width = image.shape[0], image.shape[1]
        score = frame_score(car, width, height)
        if score > visit.best_score:
            visit.best_score, visit.best_image, visit.best_captured_at = score, image.copy(), captured_at
        if is_truncated(car, width, height):
            return []  # a car half in view is classified from half a car: wait until it is whole
        fields, confidences = classified(result)
        reads, nodes = text_reads(result)
        if not fields and not reads:
            return []
        sighting = Sighting(captured_at, car, fields)
        visit.recent.append(sighting)
        visit.vote(sighting, confidences)
        visit.read(car, reads)
        visit.text_nodes.update(nodes)
        if visit.whole_since is None:
            visit.whole_since = captured_at
        return self._decide(visit, captured_at)

    def _decide(self, visit: Visit, captured_at: float) -> list[VisitDecision]:
        classes, texts = visit.answer(), visit.texts()
        held = visit.announced or {}
        answer = {**held, **classes, **texts}  # a field with no evidence yet (a resumed visit) keeps its value
        if answer == visit.announced or visit.best_image is None:
            return []
        if visit.announced is None or any(held.get(name) != value for name, value in classes.items()):
            need = agreeing_frames(self.stable_frames, self.cadence.interval_s)
            latest = visit.recent[-1]
            agreeing = {name: classes[name] for name in latest.fields} == latest.fields
            if not agreeing or visit.streak(latest.fields) < need:
                return []
            if visit.announced is None and not self._settled(visit, need, captured_at):
                return []
        update = visit.announced is not None
        visit.announced = dict(answer)
        # What the visit's write uses for each text node that ran: the voted text, or nothing (no majority, or
        # nothing ever read: the row says what the event says, not what the best frame alone reads, unread again).
        voted = {node: TextRead(texts[name], visit.reads[name][texts[name]].confidence, texts[name])
                 if name in texts else NOTHING for name, node in visit.text_nodes.items()}
        return [VisitDecision(visit.id, {**answer, **visit.text_confidences(texts)}, visit.best_image,
                              visit.best_captured_at, update, voted)]

    @staticmethod
    def _settled(visit: Visit, need: int, captured_at: float) -> bool:
        """Not still arriving: the box steady over the agreeing frames (or waiting for it took too long)."""
        if need < 2 or (visit.whole_since is not None and captured_at - visit.whole_since >= SETTLE_WAIT_S):
            return True
        return iou(visit.recent[-need].box, visit.recent[-1].box) >= SETTLED_IOU

    def announced(self) -> AnnouncedVisit | None:
        """The most recently seen visit that was announced (what to remember across a restart)."""
        visits = [v for v in self.visits.values() if v.announced is not None]
        latest = max(visits, key=lambda v: v.last_seen, default=None)
        if latest is None or latest.announced is None:
            return None
        return AnnouncedVisit(latest.id, dict(latest.announced), latest.last_seen, latest.last_box.xyxy)

    def _forget_departed(self, seen: set[str], captured_at: float) -> None:
        """Count this frame against every visit it does not show; end those gone long enough, in frames and time."""
        departed = []
        for visit in self.visits.values():
            if visit.id in seen:
                continue
            visit.misses += 1
            if visit.misses >= GONE_FRAMES and captured_at - visit.last_seen >= self.gap_s:
                departed.append(visit.id)
        for visit_id in departed:
            del self.visits[visit_id]
        if departed and not self.visits:
            # The tracker would re-find an old track id for the next car; a visit is over, so is its track.
            self.tracker = ObjectTracker(self.method)
