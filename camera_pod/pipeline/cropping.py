"""Crops and resizes for branch inputs and image actions (views, not copies, where possible)."""

from __future__ import annotations

import cv2
import numpy as np

from camera_pod.inference.detections import BoxXYXY
from camera_pod.inference.models import Image


def clip_box(box: BoxXYXY, width: int, height: int) -> BoxXYXY:
    x1, y1, x2, y2 = box
    return (min(max(x1, 0), width), min(max(y1, 0), height), min(max(x2, 0), width), min(max(y2, 0), height))


def crop(image: Image, box: BoxXYXY) -> Image | None:
    """A view of ``image`` inside ``box`` clipped to the frame; None when nothing is left."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = clip_box(box, width, height)
    if x2 <= x1 or y2 <= y1:
        return None
    return image[y1:y2, x1:x2]


def resize(image: Image, target: tuple[int, int]) -> Image:
    width, height = target
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrinking = image.shape[1] > width or image.shape[0] > height
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation).astype(np.uint8, copy=False)
