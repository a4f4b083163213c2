"""ONNX Runtime gives the Ultralytics backend's answers on the fixture video, box for box and crop for crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camera_pod.inference.detections import Detections
from camera_pod.inference.models import Model
from camera_pod.inference.onnx_backend import OnnxModel
from camera_pod.inference.selection import InferenceOptions, OnnxLoader
from camera_pod.pipeline import cropping
from tests.camera_pod.inference.conftest import Checkpoints, VideoFrame

MIN_CONFIDENCE = 0.5  # the fixture pipeline's threshold


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def assert_same_detections(expected: Detections, actual: Detections, *, min_iou: float, max_conf_diff: float) -> None:
    assert len(actual) == len(expected)
    unmatched = list(range(len(actual)))
    for index in range(len(expected)):
        candidates = [(box_iou(expected.xyxy[index], actual.xyxy[other]), other) for other in unmatched
                      if actual.class_id[other] == expected.class_id[index]]
        assert candidates, f"no {expected.names[expected.class_id[index]]} box in {actual.boxes()}"
        iou, best = max(candidates)
        assert iou >= min_iou, (expected.boxes()[index], actual.boxes()[best])
        assert abs(float(actual.confidence[best]) - float(expected.confidence[index])) <= max_conf_diff
        unmatched.remove(best)


def test_the_onnx_models_describe_themselves_like_the_checkpoints(onnx_models: dict[str, Model],
                                                                  torch_models: dict[str, Model]) -> None:
    for role, model in onnx_models.items():
        assert isinstance(model, OnnxModel)
        assert (model.task, model.names) == (torch_models[role].task, torch_models[role].names)
    assert onnx_models["detector"].names == ("Car", "Frontal")


def test_detections_match_ultralytics_on_the_fixture_video(onnx_models: dict[str, Model],
                                                           torch_models: dict[str, Model],
                                                           video_frames: list[VideoFrame]) -> None:
    with_cars = 0
    for frame in video_frames:
        expected = torch_models["detector"].detect(frame.image, classes=None, min_confidence=MIN_CONFIDENCE)
        actual = onnx_models["detector"].detect(frame.image, classes=None, min_confidence=MIN_CONFIDENCE)
        # Same input tensor as Ultralytics (the minimal-rectangle letterbox): only float rounding differs.
        assert_same_detections(expected, actual, min_iou=0.99, max_conf_diff=0.005)
        with_cars += len(expected) > 0
    assert with_cars >= 20


def test_class_filter_and_low_threshold_match_ultralytics(onnx_models: dict[str, Model],
                                                          torch_models: dict[str, Model],
                                                          video_frames: list[VideoFrame]) -> None:
    for frame in video_frames[::3]:
        for classes in ([1], [0, 1]):
            expected = torch_models["detector"].detect(frame.image, classes=classes, min_confidence=0.1)
            actual = onnx_models["detector"].detect(frame.image, classes=classes, min_confidence=0.1)
            assert set(actual.class_id.tolist()) <= set(classes)
            assert_same_detections(expected, actual, min_iou=0.99, max_conf_diff=0.005)


def test_a_square_input_model_still_matches(checkpoints: Checkpoints, onnx_cache: Path,
                                            torch_models: dict[str, Model],
                                            video_frames: list[VideoFrame]) -> None:
    """``rect=False``: a static square input, padded like Ultralytics pads for a static ONNX model."""
    square = OnnxLoader(onnx_cache, InferenceOptions(rect=False, threads=2))(checkpoints.detector)
    assert isinstance(square, OnnxModel) and square.stride is None and square.input_size == (256, 256)
    for frame in video_frames:
        expected = torch_models["detector"].detect(frame.image, classes=None, min_confidence=MIN_CONFIDENCE)
        actual = square.detect(frame.image, classes=None, min_confidence=MIN_CONFIDENCE)
        assert_same_detections(expected, actual, min_iou=0.9, max_conf_diff=0.05)


def _crops(frames: list[VideoFrame], key: str) -> list[np.ndarray]:
    crops = []
    for frame in frames:
        box = frame.truth and frame.truth[key]
        if box:
            view = cropping.crop(frame.image, tuple(box))
            if view is not None and min(view.shape[:2]) >= 8:
                crops.append(view)
    return crops


@pytest.mark.parametrize(("role", "key"), [("brand", "frontal_box"), ("body_type", "car_box")])
def test_classifiers_match_ultralytics_on_the_video_crops(role: str, key: str, onnx_models: dict[str, Model],
                                                          torch_models: dict[str, Model],
                                                          video_frames: list[VideoFrame]) -> None:
    crops = _crops(video_frames, key)
    assert len(crops) >= 20
    # As the pipeline feeds them (resizeTarget 64x64), and raw: then the classifier resizes and centre-crops.
    for crop in [cropping.resize(crop, (64, 64)) for crop in crops] + crops:
        expected = torch_models[role].classify(crop)
        actual = onnx_models[role].classify(crop)
        assert actual.class_name == expected.class_name
        assert abs(actual.confidence - expected.confidence) <= 0.02


def test_tracking_assigns_ids_across_consecutive_frames(checkpoints: Checkpoints, onnx_cache: Path,
                                                        video_frames: list[VideoFrame]) -> None:
    detector = OnnxLoader(onnx_cache, InferenceOptions(threads=2))(checkpoints.detector)
    stopped = [frame for frame in video_frames if frame.truth and frame.truth["stopped"]][:4]
    results = [detector.detect(frame.image, classes=[0], min_confidence=MIN_CONFIDENCE, track=True)
               for frame in stopped]
    assert results[-1].tracker_id is not None and len(results[-1]) == 1
