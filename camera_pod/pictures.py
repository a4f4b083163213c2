"""A frame as the per-frame path uses it: its grey levels for the change gate, its BGR pixels for the models.

A decoded video frame is YUV: its first plane already holds the grey levels (luma), so the change gate reads them
without a conversion, and the BGR image the models need is made only for the frames the detector runs on (most
frames at a pump are gated). A BGR image (a snapshot camera's JPEG, a tool's still) is its own picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from camera_pod.inference.models import Image

# Limited-range ("MPEG", TV) luma runs from 16 (black) to 235 (white): rescaled to 0..255 it is the grey level of
# cv2's BGR2GRAY on the converted image, to within a level.
LIMITED_BLACK, LIMITED_SPAN = 16, 219


@dataclass(frozen=True)
class Grey:
    """Grey levels: a 2-D uint8 array (a view), full range (0..255) or limited (16..235: video luma)."""

    pixels: npt.NDArray[np.uint8]
    limited_range: bool = False

    def crop(self, x1: int, y1: int, x2: int, y2: int) -> Grey:
        return Grey(self.pixels[y1:y2, x1:x2], self.limited_range)

    def full_range(self, values: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        """``values`` sampled from these pixels (e.g. a thumbnail) in full-range grey levels."""
        if not self.limited_range:
            return values
        scaled = ((values.astype(np.int32) - LIMITED_BLACK) * 255 + LIMITED_SPAN // 2) // LIMITED_SPAN
        return scaled.clip(0, 255).astype(np.int16)


class Picture(Protocol):
    """What the per-frame path reads: ``grey`` for the change gate, ``image`` (BGR) for the models."""

    @property
    def image(self) -> Image: ...

    @property
    def grey(self) -> Grey: ...


class StillPicture:
    """A BGR image as a picture (its grey levels computed on first use)."""

    def __init__(self, image: Image) -> None:
        self.image = image

    @cached_property
    def grey(self) -> Grey:
        return grey_of(self.image)


def grey_of(image: Image) -> Grey:
    pixels = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return Grey(np.asarray(pixels, np.uint8))


def as_picture(picture: Image | Picture) -> Picture:
    return StillPicture(picture) if isinstance(picture, np.ndarray) else picture
