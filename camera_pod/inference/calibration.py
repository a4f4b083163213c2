"""Calibration inputs for int8 quantisation, and the verdict kept beside a model's float32 export.

Where the inputs come from, best first:

1. **The archive's own sample images**: ``calibration/<model file stem>/`` (frames for a detector, crops for a
   classifier), else, for a detector only, images directly in ``calibration/``. Deterministic: the same archive
   gives the same int8 model everywhere, quantised once at load.
2. **The camera's own frames, as the model sees them**: an :class:`InputSamples` kept while the model serves in
   float32 (its letterboxed inputs, its crops), spaced out, preferring inputs in which the model found something;
   or frames handed in by the caller. Synthetic inputs are not offered: calibrated on noise, the fixture
   detector kept 51 % of its boxes on the fixture video; on frames without a car, none (measured).

The verdict (``<float32 stem>-int8.json``) names the int8 file (``<float32 stem>-int8-<calibration digest>.onnx``)
when int8 was chosen, and why float32 was kept otherwise, so that a restarted pod decides at once.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from camera_pod.inference.models import Image, Task

CALIBRATION_DIR = "calibration"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MAX_ARCHIVE_IMAGES = 32  # as model inputs at 640×480: 118 MB while they are quantised on
Blob = npt.NDArray[np.float32]


def archive_images(model_file: Path, task: Task) -> list[Path]:
    """The sample images an archive carries for this model (sorted; at most ``MAX_ARCHIVE_IMAGES``, evenly
    picked). The folder of ``model_file`` is the archive's root."""
    folder = model_file.parent / CALIBRATION_DIR
    own = folder / model_file.stem
    chosen = own if own.is_dir() else folder if task == "detect" else None
    if chosen is None or not chosen.is_dir():
        return []
    found = sorted(path for path in chosen.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                   and not path.is_symlink())
    if len(found) > MAX_ARCHIVE_IMAGES:
        found = [found[int(index)] for index in np.linspace(0, len(found) - 1, MAX_ARCHIVE_IMAGES)]
    return found


def read_images(paths: Sequence[Path]) -> list[Image]:
    """BGR images as the camera gives them; unreadable files are skipped."""
    images = [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths]
    return [cast(Image, image) for image in images if image is not None]


def files_digest(paths: Sequence[Path]) -> str:
    """What the archive's calibration images are: the sha256 of their names and contents, in order."""
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            hasher.update(hashlib.file_digest(handle, "sha256").digest())
    return hasher.hexdigest()


def digest(blobs: Sequence[Blob]) -> str:
    """What the calibration saw: the sha256 of its inputs' shapes and bytes, in order."""
    hasher = hashlib.sha256()
    for blob in blobs:
        hasher.update(repr(blob.shape).encode())
        hasher.update(np.ascontiguousarray(blob).tobytes())
    return hasher.hexdigest()


class InputSamples:
    """Model inputs seen in service, kept for calibration: every ``every``-th call, the newest ``capacity`` in
    which the model found something and the newest ``capacity // 2`` in which it found nothing. Stored as uint8
    (inputs are 8-bit images / 255: exact, and a quarter of the memory). Thread-safe."""

    def __init__(self, capacity: int, every: int = 1) -> None:
        self._with: collections.deque[npt.NDArray[np.uint8]] = collections.deque(maxlen=capacity)
        self._without: collections.deque[npt.NDArray[np.uint8]] = collections.deque(maxlen=max(1, capacity // 2))
        self._every = max(1, every)
        self._calls = 0
        self._lock = threading.Lock()

    def offer(self, blob: Blob, found: bool) -> None:
        with self._lock:
            self._calls += 1
            if (self._calls - 1) % self._every:
                return
            (self._with if found else self._without).append(np.rint(blob * 255).astype(np.uint8))

    def counts(self) -> tuple[int, int]:
        """(inputs with something found, inputs without)."""
        with self._lock:
            return len(self._with), len(self._without)

    def take(self) -> list[Blob]:
        """Every kept input as a float32 model input, and forget them."""
        with self._lock:
            kept = [*self._with, *self._without]
            self._with.clear()
            self._without.clear()
        return [sample.astype(np.float32) / np.float32(255) for sample in kept]


Source = Literal["archive", "camera"]


@dataclass(frozen=True)
class Verdict:
    """The precision chosen for one float32 export on this machine, and why."""

    precision: Literal["fp32", "int8"]
    reason: str
    source: Source | None = None  # where the calibration inputs came from
    calibration: str | None = None  # their digest
    int8_file: str | None = None  # beside the float32 export
    agreement: float | None = None
    fp32_ms: float | None = None
    int8_ms: float | None = None


def verdict_path(fp32: Path) -> Path:
    return fp32.with_name(f"{fp32.stem}-int8.json")


def int8_path(fp32: Path, calibration: str) -> Path:
    return fp32.with_name(f"{fp32.stem}-int8-{calibration[:16]}.onnx")


def read_verdict(fp32: Path) -> Verdict | None:
    """The stored verdict, or None when there is none or it does not read (then the model is decided again)."""
    try:
        return Verdict(**json.loads(verdict_path(fp32).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_verdict(fp32: Path, verdict: Verdict) -> None:
    target = verdict_path(fp32)
    handle, scratch = tempfile.mkstemp(prefix=".verdict-", dir=target.parent)
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(asdict(verdict), file, indent=1)
        os.replace(scratch, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise
