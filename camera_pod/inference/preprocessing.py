"""Model inputs from BGR frames, exactly as Ultralytics prepares them (vectorised: cv2, PIL, numpy).

Detection: letterbox (aspect kept, centred, grey 114 padding, to the input size or, for models with a
free input shape, the smallest stride-multiple rectangle), BGR → RGB, /255, NCHW float32.
Classification: resize the shortest side to the input size (PIL bilinear, as torchvision does on the
PIL images Ultralytics feeds it), centre crop, BGR → RGB, /255, NCHW float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage

from camera_pod.inference.models import Image

PAD_VALUE = 114
Blob = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Letterbox:
    """Where an image of ``source`` (h, w) sits inside a model input of at most ``target`` (h, w)."""

    source: tuple[int, int]
    target: tuple[int, int]
    resized: tuple[int, int]  # (h, w) of the image inside the padding
    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def fit(cls, source: tuple[int, int], target: tuple[int, int], *, stride: int | None = None) -> Letterbox:
        """Ultralytics' ``LetterBox(target, center=True)`` geometry (scaling up allowed).

        ``stride`` selects its ``auto`` mode: pad only to the next multiple of ``stride`` (the smallest
        rectangle, what ``predict`` does for a ``.pt`` or a dynamic ONNX); without it, pad to ``target``.
        """
        height, width = source
        scale = min(target[0] / height, target[1] / width)
        resized = max(round(height * scale), 1), max(round(width * scale), 1)
        pad_h, pad_w = target[0] - resized[0], target[1] - resized[1]
        if stride is not None:
            pad_h, pad_w = pad_h % stride, pad_w % stride
        half_h, half_w = pad_h / 2, pad_w / 2
        return cls(source, target, resized, round(half_h - 0.1), round(half_h + 0.1),
                   round(half_w - 0.1), round(half_w + 0.1))

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of the model input."""
        return self.resized[0] + self.top + self.bottom, self.resized[1] + self.left + self.right

    def apply(self, image: Image) -> Image:
        if image.shape[:2] != self.resized:
            image = cast(Image, cv2.resize(image, (self.resized[1], self.resized[0]), interpolation=cv2.INTER_LINEAR))
        if self.top or self.bottom or self.left or self.right:
            image = cast(Image, cv2.copyMakeBorder(image, self.top, self.bottom, self.left, self.right,
                                                   cv2.BORDER_CONSTANT, value=(PAD_VALUE, PAD_VALUE, PAD_VALUE)))
        return image

    def to_source(self, xyxy: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Boxes in model-input pixels → boxes in source pixels, clipped (Ultralytics' ``scale_boxes``)."""
        gain_y, gain_x = self.resized[0] / self.source[0], self.resized[1] / self.source[1]
        offset = np.array([self.left, self.top, self.left, self.top], np.float32)
        gain = np.array([gain_x, gain_y, gain_x, gain_y], np.float32)
        boxes = (xyxy - offset) / gain
        limit = np.array([self.source[1], self.source[0], self.source[1], self.source[0]], np.float32)
        return np.clip(boxes, 0, limit).astype(np.float32, copy=False)


def to_blob(image: Image) -> Blob:
    """HWC BGR uint8 → 1×3×H×W RGB float32 in [0, 1], contiguous."""
    return cast(Blob, cv2.dnn.blobFromImage(image, scalefactor=1 / 255, swapRB=True))


def detection_input(image: Image, size: tuple[int, int], *, stride: int | None = None) -> tuple[Blob, Letterbox]:
    box = Letterbox.fit((int(image.shape[0]), int(image.shape[1])), size, stride=stride)
    return to_blob(box.apply(image)), box


def classification_input(image: Image, size: tuple[int, int]) -> Blob:
    """Ultralytics' ``classify_transforms(size)``: Resize (shortest side, or exact when not square) + CenterCrop."""
    height, width = int(image.shape[0]), int(image.shape[1])
    crop_h, crop_w = size
    if crop_h == crop_w:
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(crop_h * long / short)
        new_w, new_h = (crop_h, new_long) if width <= height else (new_long, crop_h)
    else:
        new_w, new_h = crop_w, crop_h
    if (new_h, new_w) != (height, width):
        # PIL's bilinear filter antialiases when shrinking (cv2's INTER_LINEAR does not), as in training.
        resized = PILImage.fromarray(np.ascontiguousarray(image)).resize((new_w, new_h), PILImage.Resampling.BILINEAR)
        image = np.asarray(resized)
    top, left = round((new_h - crop_h) / 2.0), round((new_w - crop_w) / 2.0)
    return to_blob(image[top:top + crop_h, left:left + crop_w])
