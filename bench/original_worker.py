"""The baseline of the pipeline bench: the original worker's per-frame loop, re-implemented.

Ultralytics ``track(frame, persist=True)`` on the full frame, then one ``predict`` per triggered branch on a
224x224 crop in a thread pool, wait for all; no actions (neither side of the bench writes anywhere).
"""

from __future__ import annotations

import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BASELINE_CROP = (224, 224)  # the original worker resized every crop to this


@dataclass(frozen=True)
class StepResult:
    """What one pass over a frame did, baseline or ours: the work done, so both sides can be checked alike."""

    classifier_calls: int = 0
    car: bool = False
    fields: dict[str, str] = field(default_factory=dict)
    gated: bool = False  # ours: the change gate let the frame pass without the pipeline (the baseline never does)


def extract(archive: Path, folder: Path) -> Path:
    with zipfile.ZipFile(archive) as source:
        source.extractall(folder)
    return folder


class OriginalWorker:
    """The original's per-frame loop: track the full frame, crop each triggered branch's region to 224x224,
    ``predict`` every branch in a thread pool and wait for all. ``device`` is Ultralytics' (``cpu``, ``cuda``)."""

    def __init__(self, folder: Path, tracker: str, device: str = "cpu") -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        self.config = json.loads((folder / "pipeline.json").read_text())["pipeline"]
        self.detector = YOLO(str(folder / self.config["modelFile"]))
        self.branches = [(branch, YOLO(str(folder / branch["modelFile"]))) for branch in self.config["branches"]]
        names = self.detector.names
        self.class_ids = [index for index, name in names.items() if name in self.config["triggerClasses"]]
        self.tracker = tracker
        self.device = device
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(self.branches)))

    def detect(self, frame: np.ndarray, *, track: bool = True) -> Any:
        options = {"conf": self.config["minConfidence"], "classes": self.class_ids, "verbose": False,
                   "device": self.device}
        if track:
            return self.detector.track(frame, persist=True, tracker=f"{self.tracker}.yaml", **options)[0]
        return self.detector.predict(frame, **options)[0]

    def regions(self, result: Any) -> dict[str, tuple[float, list[int]]]:
        found: dict[str, tuple[float, list[int]]] = {}
        for box in result.boxes:
            name, confidence = result.names[int(box.cls)], float(box.conf)
            if confidence >= self.config["minConfidence"] and confidence > found.get(name, (0.0, []))[0]:
                found[name] = (confidence, [int(v) for v in box.xyxy[0].tolist()])
        return found

    def process(self, frame: np.ndarray) -> StepResult:
        import cv2

        regions = self.regions(self.detect(frame))
        futures = {}
        for branch, model in self.branches:
            if not any(cls in regions and regions[cls][0] >= branch["minConfidence"]
                       for cls in branch["triggerClasses"]):
                continue
            crop_class = branch.get("cropClass") or branch["triggerClasses"][0]
            if crop_class not in regions:
                continue
            x1, y1, x2, y2 = regions[crop_class][1]
            crop = cv2.resize(frame[y1:y2, x1:x2], BASELINE_CROP)
            futures[branch["modelId"]] = self.pool.submit(model.predict, crop, verbose=False, device=self.device)
        fields = {}
        for model_id, future in futures.items():
            result = future.result()[0]
            fields[model_id] = result.names[int(result.probs.top1)]
        return StepResult(len(futures), "Car" in regions, fields)
