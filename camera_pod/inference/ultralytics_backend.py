"""Ultralytics YOLO (.pt) backend of the inference interface."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camera_pod.inference.detections import Classification, Detections
from camera_pod.inference.models import DescribedModel, Image, Task
from detector.kit.errors import PermanentError

_SUPPORTED_TASKS: tuple[Task, ...] = ("detect", "classify")


class ModelLoadError(PermanentError):
    pass


def _yolo_class() -> Any:
    # Never reach the network, and unpickle checkpoints with torch's weights-only allow-list:
    # a .pt from an archive is untrusted input.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("ULTRALYTICS_SAFE_LOAD", "1")
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    # Ultralytics reads ULTRALYTICS_SAFE_LOAD once, when it is first imported: if anything imported it
    # before this function ran (a tracker, a tool, a test), the variable above came too late. Enforce it.
    tasks.SAFE_LOAD = True
    return YOLO


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a CUDA device, else ``cpu``; a CUDA device torch cannot see is refused
    here, at load, rather than at the first frame."""
    if device != "auto" and not device.startswith("cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0)
        if index < torch.cuda.device_count():
            return "cuda" if device == "auto" else device
    elif device == "auto":
        return "cpu"
    raise ModelLoadError(f"inference device {device!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")


class UltralyticsModel(DescribedModel):
    def __init__(self, path: Path, *, device: str = "cpu") -> None:
        """``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (see :func:`resolve_device`)."""
        if not path.is_file():
            raise ModelLoadError(f"{path.name}: file not found")
        device = resolve_device(device)
        try:
            self._yolo = _yolo_class()(str(path))
        except Exception as exc:  # Ultralytics raises many types for a bad file
            raise ModelLoadError(f"{path.name}: cannot load model: {type(exc).__name__}: {exc}") from exc
        task = self._yolo.task
        if task not in _SUPPORTED_TASKS:
            raise ModelLoadError(f"{path.name}: task {task!r} is not supported (detect or classify)")
        self._task: Task = task
        self._names = tuple(str(self._yolo.names[index]) for index in sorted(self._yolo.names))
        self._device = device
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return self._device

    def detect(self, image: Image, *, classes: Sequence[int] | None, min_confidence: float,
               track: bool = False, tracker: str = "bytetrack") -> Detections:
        options: dict[str, Any] = {"conf": max(min_confidence, 0.001), "verbose": False, "device": self._device}
        if classes:
            options["classes"] = list(classes)
        with self._lock:
            if track:
                result = self._yolo.track(image, persist=True, tracker=f"{tracker}.yaml", **options)[0]
            else:
                result = self._yolo.predict(image, **options)[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty(self._names)
        tracker_ids = boxes.id.cpu().numpy().astype(np.int64) if boxes.id is not None else None
        return Detections(boxes.xyxy.cpu().numpy().astype(np.float32), boxes.conf.cpu().numpy().astype(np.float32),
                          boxes.cls.cpu().numpy().astype(np.int64), self._names, tracker_ids)

    def export_onnx(self, *, imgsz: int | None = None, dynamic: bool = False) -> Path:
        """Export to ONNX beside the checkpoint: batch 1, float32, no NMS; returns the file.

        ``imgsz`` defaults to the training size, which is also what ``predict`` uses. ``dynamic`` leaves the
        input's height and width free (what ``predict`` needs for its minimal-rectangle letterbox).
        """
        options: dict[str, Any] = {"format": "onnx", "dynamic": dynamic, "simplify": False, "nms": False,
                                   "batch": 1, "device": "cpu", "verbose": False}
        if imgsz is not None:
            options["imgsz"] = imgsz
        with self._lock:
            return Path(self._yolo.export(**options))

    def classify(self, image: Image) -> Classification:
        with self._lock:
            result = self._yolo.predict(image, verbose=False, device=self._device)[0]
        probs = result.probs
        if probs is None:
            raise PermanentError("classifier returned no probabilities")
        return Classification(self._names[int(probs.top1)], float(probs.top1conf))
