"""The event policy: one announcement per vehicle visit, once classification is stable."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from camera_pod.inference.detections import Box, Classification, Detections
from camera_pod.pipeline.results import FrameResult, NodeResult
from camera_pod.visit_memory import VisitMemory
from camera_pod.visits import AnnouncedVisit, VisitDecision, VisitTracker, frame_score, is_truncated
from tests.conftest import FIXTURES

NAMES = ("Car", "Frontal")
IMAGE = np.zeros((480, 640, 3), np.uint8)


def frame(x: int | None, brand: str | None = "Toyota", body: str = "Sedan") -> FrameResult:
    if x is None:
        return FrameResult("nothing", NodeResult("det", "detect", Detections.empty(NAMES), {}))
    car = Box("Car", 0.9, (x, 200, x + 200, 320))
    detections = Detections(np.array([car.xyxy], np.float32), np.array([0.9], np.float32), np.array([0]), NAMES)
    branches = {}
    if brand is not None:
        branches = {"brand_cls": NodeResult("brand_cls", "classify", result_field="brand",
                                            classification=_classification(brand)),
                    "body_cls": NodeResult("body_cls", "classify", result_field="body_type",
                                           classification=_classification(body))}
    root = NodeResult("det", "detect", detections, {"Car": car}, branches=branches)
    return FrameResult("detected", root)


def _classification(name: str) -> Classification:
    return Classification(name, 0.9)


def feed(tracker: VisitTracker, frames: list[FrameResult], start: float = 0.0,
         step: float = 0.1) -> list[VisitDecision]:
    decisions = []
    for index, result in enumerate(frames):
        decisions.extend(tracker.observe(result, IMAGE, captured_at=start + index * step))
    return decisions


def test_one_announcement_per_visit_after_stable_frames() -> None:
    tracker = VisitTracker(stable_frames=3)
    decisions = feed(tracker, [frame(100 + i) for i in range(20)])
    assert len(decisions) == 1
    assert decisions[0].fields == {"brand": "Toyota", "body_type": "Sedan"}
    assert not decisions[0].update


def test_unstable_classification_is_not_announced() -> None:
    flicker = [frame(100 + i, brand="Toyota" if i % 2 else "Honda") for i in range(10)]
    assert feed(VisitTracker(stable_frames=3), flicker) == []


def test_a_better_stable_result_is_an_update_of_the_same_visit() -> None:
    tracker = VisitTracker(stable_frames=3)
    # 10 frames/s: 5 agreeing frames; the vote turns once the Sedan frames outweigh the SUV ones.
    frames = [frame(100 + i, body="SUV") for i in range(6)] + [frame(106 + i, body="Sedan") for i in range(12)]
    decisions = feed(tracker, frames)
    assert [d.fields["body_type"] for d in decisions] == ["SUV", "Sedan"]
    assert [d.update for d in decisions] == [False, True]
    assert decisions[0].visit_id == decisions[1].visit_id


def test_the_next_car_after_a_gap_is_a_new_visit() -> None:
    tracker = VisitTracker(stable_frames=2, gap_s=1.0)
    first = feed(tracker, [frame(100 + i) for i in range(5)], start=0.0)
    empty = feed(tracker, [frame(None) for _ in range(40)], start=1.0)
    second = feed(tracker, [frame(300 + i, brand="Ford", body="Pickup") for i in range(5)], start=6.0)
    assert len(first) == 1 and empty == [] and len(second) == 1
    assert first[0].visit_id != second[0].visit_id
    assert second[0].fields == {"brand": "Ford", "body_type": "Pickup"}


def test_best_frame_prefers_large_untruncated_boxes() -> None:
    whole = Box("Car", 0.5, (100, 100, 300, 200))
    bigger_but_cut = Box("Car", 0.9, (0, 100, 260, 200))
    assert frame_score(whole, 640, 480) > frame_score(bigger_but_cut, 640, 480)


@pytest.mark.parametrize(("box", "size", "cut"), [
    ((0, 100, 200, 200), (640, 480), True),
    ((8, 100, 200, 200), (640, 480), True),  # detectors stop a few pixels short of the edge
    ((12, 100, 200, 200), (640, 480), False),
    ((20, 300, 500, 600), (1920, 1080), True),
    ((40, 300, 500, 600), (1920, 1080), False),
    ((40, 300, 1900, 600), (1920, 1080), True),
])
def test_the_frame_edge_margin_grows_with_the_frame(box: tuple[int, int, int, int], size: tuple[int, int],
                                                   cut: bool) -> None:
    assert is_truncated(Box("Car", 0.9, box), *size) is cut


def test_a_car_cut_by_the_frame_edge_is_not_classified_yet() -> None:
    tracker = VisitTracker(stable_frames=2)
    entering = [frame(0, body="Sedan") for _ in range(5)]  # x1 = 0: half outside the frame
    assert feed(tracker, entering) == []
    whole = feed(tracker, [frame(50 + i, body="Pickup") for i in range(3)], start=0.5)
    assert [d.fields["body_type"] for d in whole] == ["Pickup"]


def test_a_restarted_pod_continues_the_visit_it_announced() -> None:
    before = VisitTracker(stable_frames=3)
    assert len(feed(before, [frame(100 + i) for i in range(5)], start=1000.0)) == 1
    remembered = before.announced()
    assert remembered is not None
    after = VisitTracker(stable_frames=3, resume=remembered)  # the pod was killed; the car is still there
    assert feed(after, [frame(104 + i) for i in range(10)], start=1008.0) == []
    assert after.announced() is not None and after.announced().visit_id == remembered.visit_id  # type: ignore[union-attr]


def test_a_resumed_visit_with_a_better_result_is_an_update() -> None:
    before = VisitTracker(stable_frames=3)
    feed(before, [frame(100 + i, body="SUV") for i in range(5)], start=1000.0)
    after = VisitTracker(stable_frames=3, resume=before.announced())
    decisions = feed(after, [frame(104 + i, body="Sedan") for i in range(5)], start=1005.0)
    assert [(d.fields["body_type"], d.update) for d in decisions] == [("Sedan", True)]


def test_the_next_car_after_a_restart_is_a_new_visit_not_an_update() -> None:
    """The announced car left while the pod was down; the next one drives in elsewhere: its own visit (its own
    announcement and row), never an update of the car before (the update would carry no row of its own)."""
    before = VisitTracker(stable_frames=3)
    feed(before, [frame(100 + i, brand="BMW", body="SUV") for i in range(5)], start=1000.0)
    remembered = before.announced()
    assert remembered is not None and remembered.box is not None
    after = VisitTracker(stable_frames=3, resume=remembered)
    decisions = feed(after, [frame(400 + i) for i in range(10)], start=1006.0)
    assert [(d.fields["brand"], d.update) for d in decisions] == [("Toyota", False)]
    assert decisions[0].visit_id != remembered.visit_id


def test_a_remembered_visit_keeps_where_its_car_was(tmp_path: Path) -> None:
    memory = VisitMemory(tmp_path / "visits.json")
    memory.remember("d1;cam", AnnouncedVisit("v1", {"brand": "Toyota"}, 1000.0, (10, 20, 210, 140)), now=0.0)
    assert VisitMemory(tmp_path / "visits.json").recall("d1;cam") == AnnouncedVisit(
        "v1", {"brand": "Toyota"}, 1000.0, (10, 20, 210, 140))


def test_a_car_long_after_the_restart_is_a_new_visit() -> None:
    before = VisitTracker(stable_frames=3)
    feed(before, [frame(100 + i) for i in range(5)], start=1000.0)
    after = VisitTracker(stable_frames=3, resume=before.announced(), resume_window_s=30.0)
    decisions = feed(after, [frame(100 + i) for i in range(5)], start=1100.0)
    assert [d.update for d in decisions] == [False]


def test_visit_memory_survives_a_restart_and_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "pod-visits.json"
    memory = VisitMemory(path, min_interval_s=1.0)
    visit = AnnouncedVisit("v1", {"brand": "Toyota"}, 1000.0)
    memory.remember("d1;cam", visit, now=0.0)
    memory.remember("d1;cam", AnnouncedVisit("v1", {"brand": "Toyota"}, 1000.5), now=0.5)  # throttled
    assert VisitMemory(path).recall("d1;cam") == visit
    memory.remember("d1;cam", AnnouncedVisit("v1", {"brand": "Toyota"}, 1002.0), now=2.0)
    assert VisitMemory(path).recall("d1;cam").last_seen == 1002.0  # type: ignore[union-attr]
    assert VisitMemory(path).recall("d2;cam") is None
    path.write_text("{broken")
    assert VisitMemory(path).recall("d1;cam") is None


def _car(box: list[int], brand: str, body: str) -> FrameResult:
    car = Box("Car", 0.9, (box[0], box[1], box[2], box[3]))
    detections = Detections(np.array([box], np.float32), np.array([0.9], np.float32), np.array([0]), NAMES)
    branches = {"brand_cls": NodeResult("brand_cls", "classify", result_field="brand",
                                        classification=_classification(brand)),
                "body_cls": NodeResult("body_cls", "classify", result_field="body_type",
                                       classification=_classification(body))}
    return FrameResult("detected", NodeResult("det", "detect", detections, {"Car": car}, branches=branches))


def test_each_car_of_the_fixture_video_is_one_visit_on_one_track() -> None:
    """cars.json's boxes as the detector's: one visit on one track id and one announcement per car, in video order."""
    truth = json.loads((FIXTURES / "media" / "cars.json").read_text())
    cars = {entry["frame"]: entry for entry in truth["car_frames"]}
    tracker = VisitTracker(stable_frames=3)
    decisions: list[VisitDecision] = []
    visits: dict[int, set[str]] = defaultdict(set)
    tracks: dict[int, set[int]] = defaultdict(set)
    for index in range(truth["frame_count"]):
        entry, at = cars.get(index), index / truth["fps"]
        if entry is None:
            decisions.extend(tracker.observe(frame(None), IMAGE, captured_at=at))
            continue
        visit = truth["visits"][entry["visit"]]
        decisions.extend(tracker.observe(_car(entry["car_box"], visit["brand"], visit["body_type"]), IMAGE,
                                         captured_at=at))
        visits[entry["visit"]].update(tracker.visits)
        tracks[entry["visit"]].update(*(visit.tracks for visit in tracker.visits.values()))
    assert [len(ids) for _, ids in sorted(visits.items())] == [1] * len(truth["visits"])
    assert [len(ids) for _, ids in sorted(tracks.items())] == [1] * len(truth["visits"])
    assert [(d.fields["brand"], d.fields["body_type"], d.update) for d in decisions] == [
        (v["brand"], v["body_type"], False) for v in truth["visits"]]
    assert len({d.visit_id for d in decisions}) == len(truth["visits"])
