"""Multi-object tracking on our Detections, one tracker per display subscription.

``bytetrack`` is Roboflow's ``trackers`` ByteTrack (numpy/scipy). ``botsort`` is Ultralytics' BoT-SORT, imported
only when a pipeline asks for it: anything imported from ``ultralytics`` imports torch (~480 MB per camera pod).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import supervision as sv
from trackers import ByteTrackTracker

from camera_pod.inference.detections import Detections
from camera_pod.inference.models import Image


class _Tracker(Protocol):
    def update(self, detections: Detections, image: Image | None) -> Detections: ...


def _confirmed(detections: Detections, index: npt.NDArray[np.int64], track_id: npt.NDArray[np.int64]) -> Detections:
    return Detections(detections.xyxy[index], detections.confidence[index], detections.class_id[index],
                      detections.names, track_id)


class _ByteTrack:
    # Ultralytics' bytetrack.yaml: new and first-stage tracks at confidence 0.25; its match_thresh 0.8 is a cost,
    # 1 − IoU·score, so IoU ≥ ~0.2. A track is confirmed on its second consecutive frame, as there.
    def __init__(self, lost_after_frames: int) -> None:
        self._tracker = ByteTrackTracker(lost_track_buffer=lost_after_frames, frame_rate=30.0,
                                         track_activation_threshold=0.25, high_conf_det_threshold=0.25,
                                         minimum_iou_threshold=0.2, minimum_consecutive_frames=2)

    def update(self, detections: Detections, image: Image | None) -> Detections:
        # ByteTrack ignores the image (no camera motion compensation) and warns when given one.
        tracked = self._tracker.update(sv.Detections(
            xyxy=detections.xyxy, confidence=detections.confidence, class_id=detections.class_id,
            data={"index": np.arange(len(detections))}))
        track_id = tracked.tracker_id
        if len(tracked) == 0 or track_id is None:  # its empty result carries no data (no "index")
            return _confirmed(detections, np.zeros(0, np.int64), np.zeros(0, np.int64))
        confirmed = track_id >= 0  # -1: a track not confirmed yet
        # Its ids count from 0; Ultralytics' (and so the ultralytics backend's) from 1.
        return _confirmed(detections, np.asarray(tracked.data["index"], np.int64)[confirmed],
                          track_id[confirmed].astype(np.int64) + 1)


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


class _UltralyticsBotSort:
    def __init__(self, lost_after_frames: int) -> None:
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        settings = IterableSimpleNamespace(**YAML.load(check_yaml("botsort.yaml")))
        settings.track_buffer = lost_after_frames
        settings.with_reid = False  # ReID would need extra weights; none may be downloaded
        self._tracker = BOTSORT(args=settings)

    def update(self, detections: Detections, image: Image | None) -> Detections:
        tracked = self._tracker.update(_TrackerInput(detections.xyxy, detections.confidence,
                                                     detections.class_id.astype(np.float32)), image)
        if len(tracked) == 0:
            return _confirmed(detections, np.zeros(0, np.int64), np.zeros(0, np.int64))
        return _confirmed(detections, tracked[:, 7].astype(np.int64), tracked[:, 4].astype(np.int64))


class ObjectTracker:
    def __init__(self, method: str = "bytetrack", lost_after_frames: int = 30) -> None:
        if method not in ("bytetrack", "botsort"):
            raise ValueError(f"unknown tracker {method!r}: bytetrack or botsort")
        self._tracker: _Tracker = (_ByteTrack(lost_after_frames) if method == "bytetrack"
                                   else _UltralyticsBotSort(lost_after_frames))

    def update(self, detections: Detections, image: Image | None = None) -> Detections:
        """The same boxes with ``tracker_id`` set; boxes the tracker has not confirmed are left out."""
        return self._tracker.update(detections, image)
