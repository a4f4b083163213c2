"""What a display saw on its latest processed frame, for the broker's console: the root detector's boxes."""

from __future__ import annotations

from camera_pod.pipeline.results import FrameResult
from detector.contract.pods import MAX_SIGHTED_BOXES, CropBox, SightedBox, Sighting


def sighting(result: FrameResult, captured_at: float, crop: CropBox | None) -> Sighting:
    """The most confident boxes (at most ``MAX_SIGHTED_BOXES``), moved from the crop into the full frame."""
    root = result.root
    boxes = root.detections.boxes() if root is not None and root.detections is not None else []
    boxes.sort(key=lambda box: box.confidence, reverse=True)
    dx, dy = (crop.x1, crop.y1) if crop is not None else (0, 0)
    return Sighting(captured_at=captured_at, boxes=[
        SightedBox(x1=box.xyxy[0] + dx, y1=box.xyxy[1] + dy, x2=box.xyxy[2] + dx, y2=box.xyxy[3] + dy,
                   label=box.class_name[:64], confidence=min(1.0, max(0.0, box.confidence)))
        for box in boxes[:MAX_SIGHTED_BOXES]])
