"""Raw YOLO outputs → boxes and probabilities, vectorised (numpy + OpenCV's NMS), matching Ultralytics' predict.

Detect heads (YOLOv8/11) output ``(1, 4 + nc, N)``: centre-x, centre-y, width, height, then one score per
class. End-to-end heads (YOLOv10/26) output ``(1, N, 6)``: x1, y1, x2, y2, score, class, already NMS-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

IOU_THRESHOLD = 0.7  # Ultralytics' predict defaults
MAX_DETECTIONS = 300


@dataclass(frozen=True)
class RawBoxes:
    """Boxes in model-input pixels, highest confidence first."""

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]

    @classmethod
    def empty(cls) -> RawBoxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def take(self, index: npt.NDArray[np.intp]) -> RawBoxes:
        return RawBoxes(self.xyxy[index], self.confidence[index], self.class_id[index])


def nms(boxes: RawBoxes, iou_threshold: float = IOU_THRESHOLD, max_det: int = MAX_DETECTIONS) -> RawBoxes:
    """Class-aware greedy NMS (a box suppresses only boxes of its own class), best first, at most ``max_det``."""
    if len(boxes.confidence) == 0:
        return boxes
    xywh = boxes.xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    found = cv2.dnn.NMSBoxesBatched(xywh, boxes.confidence, boxes.class_id.astype(np.int32),  # type: ignore[arg-type]
                                     0.0, iou_threshold)
    kept = np.asarray(found, np.intp).reshape(-1)
    order = kept[np.argsort(-boxes.confidence[kept], kind="stable")]
    return boxes.take(order[:max_det])


def _candidates(boxes: RawBoxes, min_confidence: float, classes: Sequence[int] | None) -> RawBoxes:
    keep = boxes.confidence > min_confidence
    if classes is not None and len(classes) > 0:
        keep &= np.isin(boxes.class_id, np.asarray(classes, np.int64))
    return boxes.take(np.flatnonzero(keep))


def decode_detect(output: npt.NDArray[np.float32], *, min_confidence: float, classes: Sequence[int] | None,
                  iou_threshold: float = IOU_THRESHOLD, max_det: int = MAX_DETECTIONS) -> RawBoxes:
    """One image's ``(1, 4 + nc, N)`` output → the boxes Ultralytics' ``non_max_suppression`` keeps."""
    predictions = output[0]
    scores = predictions[4:]
    class_id = scores.argmax(axis=0)
    confidence = np.take_along_axis(scores, class_id[None], axis=0)[0]
    keep = confidence > min_confidence  # cheap first cut before touching the boxes
    if classes is not None and len(classes) > 0:
        keep &= np.isin(class_id, np.asarray(classes, np.int64))
    index = np.flatnonzero(keep)
    if index.size == 0:
        return RawBoxes.empty()
    centre, size = predictions[:2, index].T, predictions[2:4, index].T
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32, copy=False)
    candidates = RawBoxes(xyxy, confidence[index].astype(np.float32, copy=False), class_id[index].astype(np.int64))
    return nms(candidates, iou_threshold, max_det)


def decode_end_to_end(output: npt.NDArray[np.float32], *, min_confidence: float, classes: Sequence[int] | None,
                      max_det: int = MAX_DETECTIONS) -> RawBoxes:
    """One image's ``(1, N, 6)`` NMS-free output: filtered by confidence and class only."""
    rows = output[0]
    boxes = RawBoxes(rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64))
    found = _candidates(boxes, min_confidence, classes)
    return found.take(np.arange(min(max_det, len(found.confidence))))


def probabilities(output: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One image's class scores as probabilities: exported Ultralytics classifiers end in a softmax already."""
    scores = output.reshape(-1).astype(np.float32)
    if scores.size and scores.min() >= 0 and abs(float(scores.sum()) - 1.0) < 1e-3:
        return scores
    shifted = np.exp(scores - scores.max())
    return (shifted / shifted.sum()).astype(np.float32)
