"""The inference interface the pipeline engine depends on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from camera_pod.inference.detections import Classification, Detections

Task = Literal["detect", "classify"]
Image = npt.NDArray[np.uint8]


class Model(Protocol):
    """A loaded model. Implementations serialise calls internally: one model object, many callers."""

    @property
    def task(self) -> Task: ...

    @property
    def names(self) -> tuple[str, ...]: ...

    def detect(self, image: Image, *, classes: Sequence[int] | None, min_confidence: float,
               track: bool = False, tracker: str = "bytetrack") -> Detections: ...

    def classify(self, image: Image) -> Classification: ...


class DescribedModel:
    """The task and class names every backend's model reads from its file once, at load."""

    _task: Task
    _names: tuple[str, ...]

    @property
    def task(self) -> Task:
        return self._task

    @property
    def names(self) -> tuple[str, ...]:
        return self._names


class ModelLoader(Protocol):
    def __call__(self, path: Path) -> Model: ...
