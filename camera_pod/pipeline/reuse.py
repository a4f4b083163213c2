"""Classify once per tracked vehicle: a branch's classification is reused while its crop stays the same object.

As DeepStream's secondary classifiers do, a leaf classifier's result for a crop region is kept and reused on
later frames while the region is the same vehicle (its box overlaps the cached one, IoU ≥ ``min_iou``) and
has not grown markedly (``growth``: a car driving closer shows more detail) and the result is younger than
``max_age_s``. Each branch crops one region per frame (the best box of its crop class), so associating that
box frame to frame by overlap is the tracking this needs. A box cut by the frame edge is never cached: the
car is still entering and its crop will change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from camera_pod.inference.detections import BoxXYXY
from camera_pod.pipeline.results import NodeResult


@dataclass(frozen=True)
class _Entry:
    box: BoxXYXY
    result: NodeResult
    at: float


def _area(box: BoxXYXY) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def iou(a: BoxXYXY, b: BoxXYXY) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union else 0.0


@dataclass
class ClassificationReuse:
    """One per display subscription (its own vehicles); not shared between cameras."""

    max_age_s: float = 2.0
    growth: float = 1.3
    min_iou: float = 0.5
    edge_margin: int = 2
    hits: int = 0
    misses: int = 0
    _entries: dict[str, _Entry] = field(default_factory=dict)

    def lookup(self, branch: str, box: BoxXYXY, now: float) -> NodeResult | None:
        entry = self._entries.get(branch)
        if (entry is None or now - entry.at > self.max_age_s or iou(entry.box, box) < self.min_iou
                or _area(box) > self.growth * _area(entry.box)):
            self.misses += 1
            return None
        self.hits += 1
        return entry.result

    def store(self, branch: str, box: BoxXYXY, result: NodeResult, now: float, frame_size: tuple[int, int]) -> None:
        width, height = frame_size
        x1, y1, x2, y2 = box
        m = self.edge_margin
        if x1 <= m or y1 <= m or x2 >= width - m or y2 >= height - m:
            self._entries.pop(branch, None)
            return
        self._entries[branch] = _Entry(box, result, now)
