"""The fixture archive's real models, exported once per session, and frames of the fixture video."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camera_pod.inference.models import Model
from camera_pod.inference.selection import InferenceOptions, OnnxLoader
from camera_pod.inference.ultralytics_backend import UltralyticsModel
from tests.conftest import FIXTURES

VIDEO = FIXTURES / "media" / "cars.mp4"
TRUTH = FIXTURES / "media" / "cars.json"


@dataclass(frozen=True)
class Checkpoints:
    detector: Path
    brand: Path
    body_type: Path


@dataclass(frozen=True)
class VideoFrame:
    index: int
    image: np.ndarray
    truth: dict[str, Any] | None  # the frame's entry of cars.json "car_frames"; None when no car is in view


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, fixture_members: dict[str, bytes],
                fixture_pipeline: dict[str, Any]) -> Checkpoints:
    folder = tmp_path_factory.mktemp("checkpoints")
    for name, data in fixture_members.items():
        if name.endswith(".pt"):
            (folder / name).write_bytes(data)
    root = fixture_pipeline["pipeline"]
    branches = {branch["cropClass"]: branch["modelFile"] for branch in root["branches"]}
    return Checkpoints(folder / root["modelFile"], folder / branches["Frontal"], folder / branches["Car"])


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def onnx_models(checkpoints: Checkpoints, onnx_cache: Path) -> dict[str, Model]:
    load = OnnxLoader(onnx_cache, InferenceOptions(threads=2))
    return {"detector": load(checkpoints.detector), "brand": load(checkpoints.brand),
            "body_type": load(checkpoints.body_type)}


@pytest.fixture(scope="session")
def torch_models(checkpoints: Checkpoints) -> dict[str, Model]:
    return {"detector": UltralyticsModel(checkpoints.detector), "brand": UltralyticsModel(checkpoints.brand),
            "body_type": UltralyticsModel(checkpoints.body_type)}


@pytest.fixture(scope="session")
def video_frames() -> list[VideoFrame]:
    """Every 6th frame of the fixture video (45: cars entering, stopped, leaving, and empty forecourts)."""
    truth = {entry["frame"]: entry for entry in json.loads(TRUTH.read_text())["car_frames"]}
    capture = cv2.VideoCapture(str(VIDEO))
    frames, index = [], 0
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            if index % 6 == 0:
                frames.append(VideoFrame(index, image, truth.get(index)))
            index += 1
    finally:
        capture.release()
    assert len(frames) >= 40
    return frames
