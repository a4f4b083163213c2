"""Change gating: the detector runs on a frame only when the picture changed, a visit needs it, or it is due.

At a pump a car stands still for most of its visit. Once it is announced, running the detector (and the
classifiers) on every frame of an unchanged picture only repeats the last answer. The gate compares a thumbnail
of each frame with the thumbnail of the frame the detector last ran on, as Frigate's motion detector does:

- **Thumbnail.** The display's image shrunk to ``width`` cells across (80: 8x8-pixel cells at 640x480) by area
  averaging (a box blur that also averages sensor noise away), in grey levels.
- **Change.** A cell changed when it differs from the reference by more than ``pixel_threshold`` grey levels,
  after the median difference is taken off (lighting that brightens or dims the whole picture is no change).
  The frame changed when more than ``area_threshold`` of the cells outside the ``ignore`` regions (a camera's
  clock overlay) changed: a car driving in, a standing car starting to leave. A passer-by is smaller.
- **Policy.** Run on a change, on the first frame, while the visit policy needs every frame (a car seen but not
  announced, a car missing from the last processed frame whose visit has not ended: ``busy``), and when the last
  run is ``max_skip_s`` old (a refresh that bounds staleness). Otherwise the frame is *gated*: it is the last
  processed frame again (``VisitTracker.hold``), never a frame without the car.

Everything runs on capture times, as the visit policy does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from camera_pod.inference.models import Image

Region = tuple[float, float, float, float]  # x1, y1, x2, y2 as fractions of the display's image
Outcome = Literal["gated", "changed", "visit", "refresh"]
Thumbnail = npt.NDArray[np.int16]


@dataclass(frozen=True)
class GateSettings:
    width: int = 80
    pixel_threshold: float = 12.0
    area_threshold: float = 0.005
    max_skip_s: float = 2.0
    ignore: tuple[Region, ...] = ()


@dataclass(frozen=True)
class Look:
    """The gate's verdict on one frame (``outcome`` "gated": the detector need not run on it)."""

    outcome: Outcome
    change: float  # the share of cells that changed since the reference (0 when there is none yet)
    thumbnail: Thumbnail

    @property
    def run(self) -> bool:
        return self.outcome != "gated"


def thumbnail(image: Image, width: int) -> Thumbnail:
    """Grey levels of ``image`` shrunk by area averaging to ``width`` cells across (aspect kept)."""
    height, full_width = image.shape[:2]
    size = (min(width, full_width), max(1, round(height * min(width, full_width) / full_width)))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image  # then one channel to shrink
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.int16)


def ignore_mask(shape: tuple[int, int], regions: tuple[Region, ...]) -> npt.NDArray[np.bool_]:
    """True for the thumbnail cells that count: those outside every ignored region (a cell they touch is out)."""
    height, width = shape
    mask = np.ones(shape, bool)
    for x1, y1, x2, y2 in regions:
        mask[int(y1 * height):int(np.ceil(y2 * height)), int(x1 * width):int(np.ceil(x2 * width))] = False
    return mask


@dataclass
class ChangeGate:
    """One per display subscription: its own picture (the display's crop), its own reference frame."""

    settings: GateSettings = field(default_factory=GateSettings)
    counts: dict[Outcome, int] = field(default_factory=dict)  # since the owner last took them (metrics)
    _reference: Thumbnail | None = None
    _reference_at: float | None = None
    _mask: npt.NDArray[np.bool_] | None = None

    def look(self, image: Image, captured_at: float, *, busy: bool) -> Look:
        small = thumbnail(image, self.settings.width)
        change = self.change(small)
        outcome: Outcome
        if change is None or change > self.settings.area_threshold:
            outcome = "changed"
        elif busy:
            outcome = "visit"
        elif self._reference_at is None or captured_at - self._reference_at >= self.settings.max_skip_s \
                or captured_at < self._reference_at:
            outcome = "refresh"
        else:
            outcome = "gated"
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        return Look(outcome, change or 0.0, small)

    def ran(self, look: Look, captured_at: float) -> None:
        """The detector ran on the frame of ``look``: it is the reference from now on."""
        self._reference, self._reference_at = look.thumbnail, captured_at

    def reset(self) -> None:
        """Forget the reference (a new model, a new crop): the next frame runs."""
        self._reference = self._reference_at = None

    def change(self, small: Thumbnail) -> float | None:
        """The share of counted cells that changed since the reference; None without a comparable reference."""
        reference = self._reference
        if reference is None or reference.shape != small.shape:
            return None
        if self._mask is None or self._mask.shape != small.shape:
            self._mask = ignore_mask(small.shape, self.settings.ignore)
        difference = (small - reference)[self._mask]
        if difference.size == 0:
            return 0.0
        difference -= np.int16(np.median(difference))  # the whole picture brighter or darker is no change
        changed = np.count_nonzero(np.abs(difference) > self.settings.pixel_threshold)
        return changed / difference.size

    def take_counts(self) -> dict[Outcome, int]:
        counts, self.counts = self.counts, {}
        return counts
