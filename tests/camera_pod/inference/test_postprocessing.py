"""Decoding YOLO outputs: hand-made cases, and Ultralytics' own NMS on random outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics.utils.nms import non_max_suppression

from camera_pod.inference.postprocessing import (
    RawBoxes,
    decode_detect,
    decode_end_to_end,
    nms,
    probabilities,
)


def raw(xyxy: list[list[float]], confidence: list[float], class_id: list[int]) -> RawBoxes:
    return RawBoxes(np.array(xyxy, np.float32), np.array(confidence, np.float32), np.array(class_id, np.int64))


def test_overlapping_boxes_of_one_class_keep_the_most_confident() -> None:
    kept = nms(raw([[0, 0, 100, 100], [5, 5, 105, 105]], [0.8, 0.9], [0, 0]))  # IoU 0.82 > 0.7
    assert kept.confidence.tolist() == pytest.approx([0.9])
    assert kept.xyxy.tolist() == [[5, 5, 105, 105]]


def test_overlapping_boxes_of_different_classes_are_both_kept() -> None:
    kept = nms(raw([[0, 0, 100, 100], [5, 5, 105, 105]], [0.8, 0.9], [0, 1]))
    assert kept.class_id.tolist() == [1, 0]  # best first


def test_boxes_overlapping_below_the_iou_threshold_are_both_kept() -> None:
    kept = nms(raw([[0, 0, 100, 100], [20, 0, 120, 100]], [0.8, 0.9], [0, 0]))  # IoU 80 / 120 = 0.67
    assert len(kept.confidence) == 2


def test_max_detections_keeps_the_best() -> None:
    boxes = raw([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], [0.1, 0.5, 0.3, 0.9, 0.7], [0] * 5)
    assert nms(boxes, max_det=2).confidence.tolist() == pytest.approx([0.9, 0.7])


def _detect_output(rows: list[tuple[float, float, float, float, float, float]]) -> np.ndarray:
    """Rows of (cx, cy, w, h, score class 0, score class 1) → the (1, 6, N) layout of a 2-class YOLOv8 head."""
    return np.array(rows, np.float32).T[None]


def test_decode_detect_filters_converts_and_suppresses() -> None:
    output = _detect_output([
        (50, 50, 20, 20, 0.9, 0.1),    # A: Car 0.9, box 40..60
        (51, 50, 20, 20, 0.8, 0.0),    # B: Car 0.8 on top of A → suppressed
        (50, 50, 20, 20, 0.2, 0.7),    # C: Frontal 0.7 on top of A → another class, kept
        (150, 50, 20, 20, 0.3, 0.2),   # D: below the threshold
    ])
    found = decode_detect(output, min_confidence=0.5, classes=None)
    assert found.class_id.tolist() == [0, 1]
    assert found.confidence.tolist() == pytest.approx([0.9, 0.7])
    assert found.xyxy.tolist() == [[40, 40, 60, 60], [40, 40, 60, 60]]
    only_frontal = decode_detect(output, min_confidence=0.5, classes=[1])
    assert only_frontal.class_id.tolist() == [1]
    assert len(decode_detect(output, min_confidence=0.95, classes=None).confidence) == 0


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("classes", [None, [1, 2]])
def test_decode_detect_equals_ultralytics_nms(seed: int, classes: list[int] | None) -> None:
    rng = np.random.default_rng(seed)
    count, nc = 2000, 4
    centres = rng.uniform(0, 640, (2, count))
    sizes = rng.uniform(4, 200, (2, count))
    scores = rng.uniform(0, 1, (nc, count)) ** 4  # mostly low, like a real head
    output = np.concatenate([centres, sizes, scores]).astype(np.float32)[None]
    expected = non_max_suppression(torch.from_numpy(output), 0.25, 0.7, classes=classes, max_det=300)[0].numpy()
    found = decode_detect(output, min_confidence=0.25, classes=classes)
    assert len(found.confidence) == len(expected)
    order = np.lexsort((expected[:, 0], -expected[:, 4]))
    ours = np.lexsort((found.xyxy[:, 0], -found.confidence))
    assert np.allclose(found.xyxy[ours], expected[order, :4], atol=1e-3)
    assert np.allclose(found.confidence[ours], expected[order, 4])
    assert found.class_id[ours].tolist() == expected[order, 5].astype(int).tolist()


def test_decode_end_to_end_filters_by_confidence_and_class() -> None:
    output = np.array([[[10, 10, 50, 50, 0.9, 0], [20, 20, 60, 60, 0.6, 1], [0, 0, 5, 5, 0.1, 0]]], np.float32)
    found = decode_end_to_end(output, min_confidence=0.5, classes=None)
    assert found.class_id.tolist() == [0, 1]
    assert found.xyxy.tolist() == [[10, 10, 50, 50], [20, 20, 60, 60]]
    assert decode_end_to_end(output, min_confidence=0.5, classes=[1]).class_id.tolist() == [1]


def test_probabilities_pass_through_a_softmax_and_normalise_logits() -> None:
    softmaxed = np.array([[0.1, 0.7, 0.2]], np.float32)
    assert probabilities(softmaxed).tolist() == pytest.approx([0.1, 0.7, 0.2])
    logits = np.array([[1.0, 3.0, -2.0]], np.float32)
    expected = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert probabilities(logits).tolist() == pytest.approx(expected.tolist())
