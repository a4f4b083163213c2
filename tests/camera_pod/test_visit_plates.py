"""A visit's licence plate: reads voted over the visit, announced with it, updated when they improve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from camera_pod.inference.detections import Box, Classification, Detections
from camera_pod.ocr.reading import NOTHING, TextRead
from camera_pod.pipeline.results import FrameResult, NodeResult
from camera_pod.visits import AnnouncedVisit, VisitDecision, VisitTracker

NAMES = ("Car", "Frontal")
IMAGE = np.zeros((480, 640, 3), np.uint8)
Read = tuple[str | None, float] | None  # (text, confidence); None: the text node did not run


def frame(x: int, read: Read = None, brand: str = "Toyota") -> FrameResult:
    car = Box("Car", 0.9, (x, 200, x + 200, 320))
    detections = Detections(np.array([car.xyxy], np.float32), np.array([0.9], np.float32), np.array([0]), NAMES)
    branches = {"brand_cls": NodeResult("brand_cls", "classify", result_field="brand",
                                        classification=Classification(brand, 0.9)),
                "body_cls": NodeResult("body_cls", "classify", result_field="body_type",
                                       classification=Classification("Sedan", 0.9))}
    if read is not None:
        text, confidence = read
        reading = TextRead(text, confidence if text else None, text or "")
        branches["plate_ocr"] = NodeResult("plate_ocr", "ocr", reading=reading, result_field="license_plate")
    return FrameResult("detected", NodeResult("det", "detect", detections, {"Car": car}, branches=branches))


def feed(tracker: VisitTracker, reads: Sequence[Read], brand: str = "Toyota") -> list[tuple[int, VisitDecision]]:
    decisions = []
    for index, read in enumerate(reads):
        for decision in tracker.observe(frame(100 + index % 2, read, brand), IMAGE, captured_at=index * 0.2):
            decisions.append((index, decision))
    return decisions


CLASSES = {"brand": "Toyota", "body_type": "Sedan"}


def test_the_visit_is_announced_with_its_voted_plate_and_confidence() -> None:
    (at, decision), = feed(VisitTracker(stable_frames=3), [("AB123CD", 0.9), ("AB123CO", 0.85), ("AB123CD", 0.95)]
                           + [None] * 5)
    assert at == 2 and not decision.update
    assert decision.fields == {**CLASSES, "license_plate": "AB123CD", "license_plate_confidence": "0.925"}
    assert decision.reads == {"plate_ocr": TextRead("AB123CD", pytest.approx(0.925), "AB123CD")}  # for the row


@pytest.mark.parametrize("reads", [
    [None] * 8,  # no text node, or a node that never ran
    [(None, 0.0)] * 8,  # unreadable or absent plate: read as nothing
])
def test_no_plate_read_announces_the_visit_just_as_soon_with_no_plate(reads: list[Read]) -> None:
    with_plates = feed(VisitTracker(stable_frames=3), reads)
    without = feed(VisitTracker(stable_frames=3), [None] * 8)
    assert [(at, decision.fields) for at, decision in with_plates] == [(at, d.fields) for at, d in without] == [
        (2, CLASSES)]
    ran = reads[0] is not None
    assert with_plates[0][1].reads == ({"plate_ocr": NOTHING} if ran else {}), \
        "a node that read nothing on every frame reads nothing on the write either (no extra read)"


def test_no_majority_is_no_plate_until_one_appears_then_an_update() -> None:
    decisions = feed(VisitTracker(stable_frames=3), [("AB123CD", 0.9), ("XY987ZW", 0.9), (None, 0.0), (None, 0.0),
                                                     ("AB123CD", 0.9), (None, 0.0)])
    assert [(at, decision.update, decision.fields.get("license_plate")) for at, decision in decisions] == [
        (2, False, None), (4, True, "AB123CD")]  # the update needs no agreeing frames of the classes
    assert decisions[0][1].reads == {"plate_ocr": NOTHING}  # the visit's write says no plate, as its event


def test_an_announced_plate_stays_until_another_outweighs_it() -> None:
    reads: list[Read] = [("AB123CD", 0.9)] * 3 + [("AB123C0", 0.9)] * 4 + [("AB123C0", 0.9)] * 2
    decisions = feed(VisitTracker(stable_frames=3), reads)
    assert [(at, decision.fields["license_plate"]) for at, decision in decisions] == [
        (2, "AB123CD"), (7, "AB123C0")]  # 4 x 0.9 < 1.5 x 3 x 0.9; 5 x 0.9 ≥ it


def test_a_restarted_pod_keeps_the_plate_it_announced() -> None:
    remembered = AnnouncedVisit("v-before", {**CLASSES, "license_plate": "AB123CD"}, last_seen=-1.0,
                                box=(100, 200, 300, 320))
    tracker = VisitTracker(stable_frames=3, resume=remembered)
    assert feed(tracker, [None] * 6) == []  # no reads yet: the plate announced before is not taken back
    tracker = VisitTracker(stable_frames=3, resume=remembered)
    assert feed(tracker, [("AB123CD", 0.9)] * 6) == []  # the same car, the same plate: nothing new


def test_frame_mode_carries_each_frames_read() -> None:
    assert frame(100, ("AB123CD", 0.9123)).classified_fields() == {
        **CLASSES, "license_plate": "AB123CD", "license_plate_confidence": "0.912"}
    assert frame(100, (None, 0.0)).classified_fields() == CLASSES
