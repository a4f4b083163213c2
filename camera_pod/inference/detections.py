"""The one container for boxes passed between stages (never bare tuples)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

BoxXYXY = tuple[int, int, int, int]


@dataclass(frozen=True)
class Box:
    class_name: str
    confidence: float
    xyxy: BoxXYXY
    track_id: int | None = None

    @property
    def area(self) -> int:
        x1, y1, x2, y2 = self.xyxy
        return max(0, x2 - x1) * max(0, y2 - y1)


@dataclass(frozen=True)
class Detections:
    """N boxes as parallel arrays; ``names`` maps class ids to class names."""

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]
    names: tuple[str, ...]
    tracker_id: npt.NDArray[np.int64] | None = field(default=None)

    @classmethod
    def empty(cls, names: tuple[str, ...]) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), names)

    def __len__(self) -> int:
        return int(self.confidence.shape[0])

    def filter(self, keep: npt.NDArray[np.bool_]) -> Detections:
        return Detections(self.xyxy[keep], self.confidence[keep], self.class_id[keep], self.names,
                          None if self.tracker_id is None else self.tracker_id[keep])

    def boxes(self) -> list[Box]:
        result = []
        for index in range(len(self)):
            x1, y1, x2, y2 = (round(float(v)) for v in self.xyxy[index])
            track = None if self.tracker_id is None else int(self.tracker_id[index])
            result.append(Box(self.names[int(self.class_id[index])], float(self.confidence[index]),
                              (x1, y1, x2, y2), track))
        return result

    def best_per_class(self) -> dict[str, Box]:
        """Highest-confidence box of every class present."""
        best: dict[str, Box] = {}
        for box in self.boxes():
            if box.class_name not in best or box.confidence > best[box.class_name].confidence:
                best[box.class_name] = box
        return best


@dataclass(frozen=True)
class Classification:
    class_name: str
    confidence: float
