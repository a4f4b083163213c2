"""A display's latest boxes for the console: the root detector's, moved from the crop into the full frame."""

from __future__ import annotations

import numpy as np

from camera_pod.inference.detections import Detections
from camera_pod.pipeline.results import FrameResult, NodeResult
from camera_pod.sightings import sighting
from detector.contract.pods import MAX_SIGHTED_BOXES, CropBox, StreamReport


def result(boxes: list[tuple[float, float, float, float, float, int]]) -> FrameResult:
    table = np.array(boxes, np.float32).reshape(-1, 6)
    detections = Detections(table[:, :4], table[:, 4], table[:, 5].astype(np.int64), ("Car", "Frontal"))
    return FrameResult(status="detected", root=NodeResult(model_id="root", task="detect", detections=detections))


def test_boxes_are_moved_by_the_crop_and_the_most_confident_kept() -> None:
    found = sighting(result([(10, 20, 110, 90, 0.6, 0), (40, 50, 60, 70, 0.9, 1)]), 1700000000.5,
                     CropBox(x1=100, y1=80, x2=560, y2=400))
    assert found.captured_at == 1700000000.5
    assert [(b.label, b.x1, b.y1, b.x2, b.y2) for b in found.boxes] == [
        ("Frontal", 140, 130, 160, 150), ("Car", 110, 100, 210, 170)]
    assert round(found.boxes[0].confidence, 3) == 0.9
    uncropped = sighting(result([(10, 20, 110, 90, 0.6, 0)]), 1.0, None)
    assert (uncropped.boxes[0].x1, uncropped.boxes[0].y1) == (10, 20)


def test_a_frame_with_nothing_or_many_boxes() -> None:
    assert sighting(FrameResult(status="nothing", root=None), 1.0, None).boxes == []
    many = sighting(result([(i, i, i + 5, i + 5, i / 100, 0) for i in range(50)]), 1.0, None)
    assert len(many.boxes) == MAX_SIGHTED_BOXES and many.boxes[0].confidence > many.boxes[-1].confidence


def test_a_report_without_sightings_still_validates() -> None:
    """An older pod sends no ``sightings``: the broker reads its report as before."""
    old = StreamReport.model_validate_json('{"kind": "status", "online": true, "state": "online", "fps": 5, '
                                           '"last_frame_at": null, "frames": 1, "reconnects": 0, '
                                           '"last_error": null, "http_port": 0}')
    assert old.sightings == {}
