"""Draw boxes, classes and branch results on a frame (``detector pipeline run --out``)."""

from __future__ import annotations

import cv2

from camera_pod.inference.models import Image
from camera_pod.pipeline.results import FrameResult

_COLOURS = ((0, 200, 0), (0, 140, 255), (255, 120, 0), (200, 0, 200))


def annotate(image: Image, result: FrameResult) -> Image:
    canvas = image.copy()
    root = result.root
    if root is None or root.detections is None:
        return canvas
    for box in root.detections.boxes():
        colour = _COLOURS[root.detections.names.index(box.class_name) % len(_COLOURS)]
        x1, y1, x2, y2 = box.xyxy
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        label = f"{box.class_name} {box.confidence:.2f}" + (f" #{box.track_id}" if box.track_id is not None else "")
        cv2.putText(canvas, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    summary = ", ".join(f"{field}={value}" for field, value in result.classified_fields().items())
    if summary:
        cv2.putText(canvas, summary, (8, canvas.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2,
                    cv2.LINE_AA)
    return canvas
