"""ObjectTracker: one stable track id per car of the fixture video, and the default tracker without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from camera_pod.inference.detections import Detections
from camera_pod.tracking import ObjectTracker
from tests.conftest import FIXTURES

TRUTH = json.loads((FIXTURES / "media" / "cars.json").read_text())
NAMES = ("Car",)


def detections(boxes: list[list[int]], confidence: list[float] | None = None) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4),
                      np.array(confidence or [0.9] * len(boxes), np.float32), np.zeros(len(boxes), np.int64), NAMES)


def video_frames() -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(FIXTURES / "media" / TRUTH["video"]))
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                return
            yield image
    finally:
        capture.release()


@pytest.mark.parametrize("method", ["bytetrack", "botsort"])
def test_each_car_of_the_fixture_video_is_one_track(method: str) -> None:
    """The video's car boxes as detections: every visit one track id from its second frame on, a new id per car."""
    truth = {entry["frame"]: entry for entry in TRUTH["car_frames"]}
    tracker = ObjectTracker(method)
    ids: dict[int, list[int | None]] = defaultdict(list)
    frames = 0
    for index, image in enumerate(video_frames()):
        frames += 1
        entry = truth.get(index)
        tracked = tracker.update(detections([] if entry is None else [entry["car_box"]]), image)
        if entry is None:
            assert len(tracked) == 0
            continue
        assert len(tracked) <= 1 and tracked.tracker_id is not None
        if len(tracked):
            assert tracked.xyxy[0].tolist() == entry["car_box"]  # the detector's box, not the tracker's estimate
        ids[entry["visit"]].append(int(tracked.tracker_id[0]) if len(tracked) else None)
    assert frames == TRUTH["frame_count"]
    assert len(ids) == len(TRUTH["visits"])
    per_visit = []
    for visit, track in sorted(ids.items()):
        assert track[0] is None, f"visit {visit}: a track is confirmed on its second frame"
        assert len(set(track[1:])) == 1 and track[1] is not None, f"visit {visit}: {track}"
        per_visit.append(track[1])
    assert len(set(per_visit)) == len(per_visit), per_visit


def test_boxes_keep_their_own_scores_and_classes_and_weak_ones_start_no_track() -> None:
    tracker = ObjectTracker("bytetrack")
    cars = [[[400 - 10 * step, 50, 560 - 10 * step, 150], [20 + 10 * step, 300, 180 + 10 * step, 400],
             [300, 200, 340, 240]] for step in range(5)]
    seen: dict[tuple[int, int], set[int]] = defaultdict(set)
    for boxes in cars:
        frame = Detections(np.array(boxes, np.float32), np.array([0.8, 0.6, 0.1], np.float32),
                           np.array([0, 1, 0]), ("Car", "Truck"))
        tracked = tracker.update(frame)
        assert tracked.tracker_id is not None
        for box, confidence, class_id, track in zip(tracked.xyxy.tolist(), tracked.confidence.tolist(),
                                                    tracked.class_id.tolist(), tracked.tracker_id.tolist(),
                                                    strict=True):
            source = boxes.index(box)
            assert (confidence, class_id) == (float(frame.confidence[source]), int(frame.class_id[source]))
            seen[(source, class_id)].add(track)
    assert set(seen) == {(0, 0), (1, 1)}  # the 0.1 box never became a track
    assert len(seen[(0, 0)]) == len(seen[(1, 1)]) == 1 and seen[(0, 0)] != seen[(1, 1)]


def test_an_unknown_tracker_is_refused() -> None:
    with pytest.raises(ValueError, match="sort"):
        ObjectTracker("sort")


def test_a_camera_pod_with_visit_tracking_imports_no_torch() -> None:
    """Ultralytics imports torch (~480 MB per pod); the ONNX pod's default tracker must not bring it in."""
    code = """
import sys
sys.path.append(sys.argv[1])
import numpy as np
import camera_pod.runtime
from camera_pod.inference.detections import Detections
from camera_pod.tracking import ObjectTracker
from camera_pod.visits import VisitTracker

VisitTracker()
car = Detections(np.array([[10, 10, 200, 120]], np.float32), np.array([0.9], np.float32), np.array([0]), ("Car",))
tracker = ObjectTracker("bytetrack")
for _ in range(3):
    tracker.update(car)
print(sorted(name for name in ("torch", "ultralytics") if name in sys.modules))
"""
    root = str(Path(__file__).parents[2])  # last on the path: the repository's operator/ shadows the stdlib's
    result = subprocess.run([sys.executable, "-P", "-c", code, root], cwd=root, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
