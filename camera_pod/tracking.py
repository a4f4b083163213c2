"""Ultralytics ByteTrack / BoT-SORT run on our Detections, one tracker per display subscription."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from camera_pod.inference.detections import Detections
from camera_pod.inference.models import Image


class _TrackerInput:
    """The duck type Ultralytics trackers read: conf, cls, xywh, xyxy and boolean indexing."""

    def __init__(self, xyxy: npt.NDArray[np.float32], conf: npt.NDArray[np.float32],
                 cls: npt.NDArray[np.float32]) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls
        self.xywh = np.column_stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                                     xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _TrackerInput:
        return _TrackerInput(self.xyxy[index], self.conf[index], self.cls[index])


def _tracker(method: str, lost_after_frames: int) -> Any:
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    settings = IterableSimpleNamespace(**YAML.load(check_yaml(f"{method}.yaml")))
    settings.track_buffer = lost_after_frames
    if method == "botsort":
        settings.with_reid = False  # ReID would need extra weights; none may be downloaded
        return BOTSORT(args=settings)
    return BYTETracker(args=settings)


class ObjectTracker:
    def __init__(self, method: str = "bytetrack", lost_after_frames: int = 30) -> None:
        self._tracker = _tracker(method, lost_after_frames)

    def update(self, detections: Detections, image: Image | None = None) -> Detections:
        """The same boxes with ``tracker_id`` set; boxes the tracker has not confirmed are left out."""
        if len(detections) == 0:
            self._tracker.update(_TrackerInput(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                               np.zeros(0, np.float32)), image)
            return detections
        tracked = self._tracker.update(_TrackerInput(detections.xyxy, detections.confidence,
                                                     detections.class_id.astype(np.float32)), image)
        if len(tracked) == 0:
            return detections.filter(np.zeros(len(detections), bool))
        indices = tracked[:, 7].astype(np.int64)
        return Detections(detections.xyxy[indices], detections.confidence[indices], detections.class_id[indices],
                          detections.names, tracked[:, 4].astype(np.int64))
