"""Per-subscription crops of a shared camera frame."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from camera_pod.inference.models import Image
from camera_pod.streams.errors import StreamConfigError


class Crop(BaseModel):
    """Pixels of the source frame; x2/y2 exclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    x1: int = Field(ge=0)
    y1: int = Field(ge=0)
    x2: int = Field(ge=0)
    y2: int = Field(ge=0)

    @model_validator(mode="after")
    def _not_empty(self) -> Crop:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"empty crop ({self.x1},{self.y1})-({self.x2},{self.y2}): x2 > x1 and y2 > y1 needed")
        return self


def apply_crop(image: Image, crop: Crop | None) -> Image:
    """A view (no copy) of the crop, clipped to the frame; an entirely outside crop is a config error."""
    if crop is None:
        return image
    height, width = image.shape[:2]
    x1, y1, x2, y2 = min(crop.x1, width), min(crop.y1, height), min(crop.x2, width), min(crop.y2, height)
    if x2 <= x1 or y2 <= y1:
        raise StreamConfigError(f"crop ({crop.x1},{crop.y1})-({crop.x2},{crop.y2}) lies outside the "
                                f"{width}x{height} frame")
    return image[y1:y2, x1:x2]
