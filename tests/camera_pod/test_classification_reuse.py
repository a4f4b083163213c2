"""Classify once per vehicle: leaf classifiers are skipped while their crop stays the same, unchanged vehicle."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camera_pod.inference.detections import Classification
from camera_pod.inference.models import Image, Model
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import NodeResult
from camera_pod.pipeline.reuse import ClassificationReuse, iou
from tests.fixtures import scenes

RESULT = NodeResult("brand", "classify", classification=Classification("Toyota", 0.9), result_field="brand")
BOX = (100, 100, 300, 260)
FRAME = (640, 480)


def test_reused_while_the_same_vehicle_is_unchanged() -> None:
    reuse = ClassificationReuse(max_age_s=2.0, growth=1.3)
    assert reuse.lookup("brand", BOX, now=0.0) is None
    reuse.store("brand", BOX, RESULT, now=0.0, frame_size=FRAME)
    assert reuse.lookup("brand", (104, 102, 306, 262), now=1.0) is RESULT, "a car moving a little"
    assert reuse.lookup("other-branch", BOX, now=1.0) is None
    assert (reuse.hits, reuse.misses) == (1, 2)


@pytest.mark.parametrize(("box", "now", "why"), [
    (BOX, 2.5, "older than the interval"),
    ((400, 100, 600, 260), 1.0, "another vehicle (no overlap)"),
    ((90, 90, 330, 300), 1.0, "grown more than 1.3x: closer, more detail"),
])
def test_classified_again_when(box: tuple[int, int, int, int], now: float, why: str) -> None:
    reuse = ClassificationReuse(max_age_s=2.0, growth=1.3)
    reuse.store("brand", BOX, RESULT, now=0.0, frame_size=FRAME)
    assert reuse.lookup("brand", box, now=now) is None, why


def test_a_vehicle_cut_by_the_frame_edge_is_never_cached() -> None:
    reuse = ClassificationReuse()
    reuse.store("brand", (0, 100, 200, 260), RESULT, now=0.0, frame_size=FRAME)
    assert reuse.lookup("brand", (0, 100, 200, 260), now=0.1) is None


def test_iou() -> None:
    assert iou(BOX, BOX) == 1.0 and iou(BOX, (400, 400, 500, 500)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


@dataclasses.dataclass
class CountingModel:
    """A real model whose classify calls are counted."""

    model: Model
    calls: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def classify(self, image: Image) -> Classification:
        self.calls += 1
        return self.model.classify(image)


async def test_the_engine_skips_classifiers_for_a_known_vehicle(tmp_path: Path, fixture_mpta: Path) -> None:
    loaded = await ArchiveStore(tmp_path / "cache").load(str(fixture_mpta))
    counted = {name: CountingModel(model) if model.task == "classify" else model
               for name, model in loaded.models.items()}
    archive = LoadedArchive(loaded.sha256, loaded.root, loaded.config, counted)  # type: ignore[arg-type]
    image, _ = scenes.render_scene(np.random.default_rng(7), cars=1)
    engine = PipelineEngine(archive, None)
    reuse = ClassificationReuse(max_age_s=60)
    context = FrameContext(camera_id="d;c", display_id="d")
    try:
        first = await engine.process(image, context, act=False, reuse=reuse)
        classifiers = [model for model in counted.values() if isinstance(model, CountingModel)]
        runs = sum(model.calls for model in classifiers)
        assert first.classified_fields() and runs == len(first.classified_fields())
        second = await engine.process(image, context, act=False, reuse=reuse)
        assert second.classified_fields() == first.classified_fields()
        assert sum(model.calls for model in classifiers) == runs, "no classifier ran for the same car"
        await engine.process(image, context, act=False)
        assert sum(model.calls for model in classifiers) == 2 * runs, "without reuse every frame classifies"
    finally:
        engine.close()
