"""Does a quantised model give its float32 original's answers? Box by box for detectors, top-1 for classifiers.

Detections are compared at ``CONFIDENCE`` (Ultralytics' own predict default, below any pipeline threshold seen so
far), both ways: a box of either model agrees when the other has a box of the same class at IoU ≥ ``MIN_IOU``
among its boxes down to ``CONFIDENCE - MARGIN`` (a box at 0.26 in one model and 0.24 in the other is the same
box, not a miss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from camera_pod.inference.postprocessing import RawBoxes

CONFIDENCE = 0.25
MARGIN = 0.1
MIN_IOU = 0.7


@dataclass(frozen=True)
class Agreement:
    """How many answers were compared and how many agreed (boxes of both models, or classifier top-1s)."""

    compared: int = 0
    agreed: int = 0

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.compared + other.compared, self.agreed + other.agreed)

    @property
    def share(self) -> float:
        return self.agreed / self.compared if self.compared else 1.0

    def __str__(self) -> str:
        return f"{self.agreed}/{self.compared} ({self.share:.1%})"


def pairwise_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """IoU of every box of ``a`` (N×4 xyxy) with every box of ``b`` (M×4): N×M."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)


def _found(boxes: RawBoxes, others: RawBoxes) -> int:
    """How many of ``boxes`` (at ``CONFIDENCE``) have a counterpart in ``others`` (down to the margin), each
    counterpart used once, best IoU first."""
    mine = boxes.take(np.flatnonzero(boxes.confidence >= CONFIDENCE))
    theirs = others.take(np.flatnonzero(others.confidence >= CONFIDENCE - MARGIN))
    if len(mine.confidence) == 0 or len(theirs.confidence) == 0:
        return 0
    iou = pairwise_iou(mine.xyxy, theirs.xyxy)
    iou[mine.class_id[:, None] != theirs.class_id[None, :]] = 0.0
    found = 0
    for row in np.argsort(-iou.max(axis=1), kind="stable"):
        column = int(iou[row].argmax())
        if iou[row, column] >= MIN_IOU:
            found += 1
            iou[:, column] = 0.0
    return found


def detections(reference: RawBoxes, candidate: RawBoxes) -> Agreement:
    """One image's boxes from both models (undecided by any pipeline threshold: decode at ``CONFIDENCE - MARGIN``
    or lower)."""
    compared = int((reference.confidence >= CONFIDENCE).sum() + (candidate.confidence >= CONFIDENCE).sum())
    return Agreement(compared, _found(reference, candidate) + _found(candidate, reference))


def reference_boxes(reference: RawBoxes) -> int:
    """The boxes a comparison rests on: the float32 model's at ``CONFIDENCE``."""
    return int((reference.confidence >= CONFIDENCE).sum())


def classifications(reference: npt.NDArray[np.float32], candidate: npt.NDArray[np.float32]) -> Agreement:
    """One crop's class probabilities from both models: the same top-1 or not."""
    return Agreement(1, int(int(reference.argmax()) == int(candidate.argmax())))
