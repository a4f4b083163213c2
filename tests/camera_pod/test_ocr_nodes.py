"""Text (OCR) nodes in pipeline.json: validated like every node, run by the engine, their fields in templates."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psycopg
import pytest

from camera_pod.commands.tree import render_tree
from camera_pod.mpta.errors import MptaError
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.ocr.reading import TextRead
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from tests.conftest import REDIS_URL
from tests.fixtures import plates, scenes
from tests.support.action_sinks import RowRecorder, real_sink
from tests.support.clip_replay import replay_clip
from tests.support.redis_keys import delete_keys

PLATE_OCR = {"type": "ocr", "modelId": "plate_ocr", "triggerClasses": ["Frontal"], "minConfidence": 0.5,
             "crop": True, "cropClass": "Frontal", "parallel": True}
Edit = Callable[[dict[str, Any]], None]


def with_plates(document: dict[str, Any], **node: Any) -> None:
    """The fixture's pipeline with a plate branch on Frontal, its text into license_character."""
    document["pipeline"]["branches"].append({**PLATE_OCR, **node})
    document["pipeline"]["parallelActions"][0]["fields"]["license_character"] = "{plate_ocr.text}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ArchiveStore:
    """One cache for the module: the fixture's models are exported to ONNX once."""
    return ArchiveStore(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def make(tmp_path_factory: pytest.TempPathFactory, fixture_members: dict[str, bytes],
         fixture_pipeline: dict[str, Any]) -> Callable[..., Path]:
    folder = tmp_path_factory.mktemp("archives")
    counter = iter(range(10_000))

    def build(*edits: Edit, extra: Mapping[str, bytes] | None = None) -> Path:
        document = copy.deepcopy(fixture_pipeline)
        for edit in edits:
            edit(document)
        path = folder / f"plates-{next(counter)}.mpta"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pipeline.json", json.dumps(document))
            for name, data in {**fixture_members, **(extra or {})}.items():
                if name != "pipeline.json":
                    archive.writestr(name, data)
        return path

    return build


def _branch(**changes: Any) -> Edit:
    return lambda document: with_plates(document, **changes)


def _also(edit: Edit) -> Edit:
    return lambda document: (with_plates(document), edit(document))  # type: ignore[func-returns-value]


# (case id, edit of the fixture's pipeline.json, expected path, expected problem)
CASES: list[tuple[str, Edit, str, str]] = [
    ("catastrophic-pattern", _branch(pattern="(A+)+$"), "pipeline.branches[2].pattern", "may backtrack"),
    ("many-stars-pattern", _branch(pattern="A*" * 12 + "B"), "pipeline.branches[2].pattern", "may backtrack"),
    ("broken-pattern", _branch(pattern="([A-Z]"), "pipeline.branches[2].pattern", "not a regular expression"),
    ("long-pattern", _branch(pattern="A" * 300), "pipeline.branches[2].pattern", "at most 256 characters"),
    ("replacement-group", _branch(pattern="([A-Z]{2})([0-9]{3})", replacement=r"\1-\3"),
     "pipeline.branches[2].replacement", "invalid group reference 3"),
    ("replacement-alone", _branch(replacement=r"\1"), "pipeline.branches[2].replacement", "needs a pattern"),
    ("lengths", _branch(minLength=9, maxLength=5), "pipeline.branches[2].maxLength", "less than minLength"),
    ("too-long-reads", _branch(maxLength=40), "pipeline.branches[2].maxLength", "less than or equal to 16"),
    ("text-confidence", _branch(minTextConfidence=1.5), "pipeline.branches[2].minTextConfidence",
     "less than or equal to 1"),
    ("result-field", _branch(resultField="plate; DROP"), "pipeline.branches[2].resultField", "should match"),
    ("unknown-trigger", _branch(triggerClasses=["LicensePlate"]), "pipeline.branches[2].triggerClasses",
     "'LicensePlate' is not a class of the parent"),
    ("unknown-crop", _branch(cropClass="LicensePlate"), "pipeline.branches[2].cropClass", "'LicensePlate'"),
    ("no-branches", _branch(branches=[]), "pipeline.branches[2].branches", "unknown field"),
    ("unknown-type", _branch(type="tesseract"), "pipeline.branches[2]", "unknown node type"),
    ("model-not-onnx", _branch(modelFile="rec.pt"), "pipeline.branches[2].modelFile", "ONNX"),
    ("model-escape", _branch(modelFile="../rec.onnx"), "pipeline.branches[2].modelFile", "'..'"),
    ("model-missing", _branch(modelFile="thai_rec.onnx"), "pipeline.branches[2].modelFile", "file not in archive"),
    ("unknown-text-field", _also(lambda d: d["pipeline"]["parallelActions"][0]["fields"].update(
        plate="{plate_ocr.brand}")), "pipeline.parallelActions[0].fields.plate", "has no field 'brand'"),
    ("duplicate-id", _branch(modelId="car_brand_cls_v1"), "pipeline.branches[2].modelId", "duplicate modelId"),
]


@pytest.mark.parametrize(("edit", "path", "problem"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_a_bad_text_node_is_refused_with_its_json_path(store: ArchiveStore, make: Callable[..., Path], edit: Edit,
                                                       path: str, problem: str) -> None:
    with pytest.raises(MptaError) as caught:
        store.load_blocking(str(make(edit)))
    messages = [str(issue) for issue in caught.value.issues]
    assert any(message.startswith(f"{path}: ") and problem in message for message in messages), messages


def test_a_corrupt_recognition_model_in_the_archive_is_refused(store: ArchiveStore,
                                                               make: Callable[..., Path]) -> None:
    archive = make(_branch(modelFile="models/thai_rec.onnx"), extra={"models/thai_rec.onnx": b"\x08\x01garbage"})
    with pytest.raises(MptaError, match=r"pipeline.branches\[2\].modelFile: not an ONNX recognition model"):
        store.load_blocking(str(archive))


@pytest.fixture(scope="module")
def plated(store: ArchiveStore, make: Callable[..., Path]) -> LoadedArchive:
    return store.load_blocking(str(make(with_plates)))


def test_an_archive_with_a_text_node_loads_and_shows_it(plated: LoadedArchive, store: ArchiveStore) -> None:
    assert plated.readers["plate_ocr"].recogniser is store.recognisers.bundled()
    assert set(plated.models) == {"car_frontal_detection_v1", "car_brand_cls_v1", "car_bodytype_cls_v1"}
    assert "├── plate_ocr [ocr: PP-OCRv6_rec_small.onnx]  on Frontal ≥ 0.5  crop Frontal  parallel  " \
           "text ≥ 0.8, 4-12 of 36 chars  → license_plate" in render_tree(plated)


def _scene(printed: str) -> np.ndarray:
    rng = np.random.default_rng(31)
    image = scenes.render_background(rng, clutter=0)
    style = plates.PlateStyle(plates.FONTS[1], plates.PLATE_COLOURS[0], 0.88, 3.8, 1.0, 0.09)
    plates.render_car_with_plate_at(image, 150, 170, 340, "Toyota", "Sedan", printed, style, True, (40, 40, 200))
    return plates.degrade(image, rng, blur=0.4, noise=2.0, jpeg_quality=90)


@pytest.mark.parametrize("reads", [{}, {"plate_ocr": TextRead("KL482TX", 0.97, "KL482TX")}], ids=["read", "voted"])
def test_the_engine_reads_the_plate_into_fields_and_templates(plated: LoadedArchive,
                                                              reads: dict[str, TextRead]) -> None:
    sink = RowRecorder()
    engine = PipelineEngine(plated, sink)
    printed = "KL 482 TX" if not reads else "ZZ 999 ZZ"  # a known read (the visit's vote) is used as it is
    try:
        result = asyncio.run(engine.process(_scene(printed), FrameContext("d;c", "d", reads=reads)))
    finally:
        engine.close()
    assert result.status == "detected", result.reason
    fields = result.classified_fields()  # (the fixture's classifiers never saw a plate: brand is not checked)
    assert fields["license_plate"] == "KL482TX" and float(fields["license_plate_confidence"]) >= 0.8
    assert sink.rows == [{"car_brand": fields["brand"], "car_body_type": fields["body_type"],
                          "license_character": "KL482TX"}]
    assert ("plate_ocr" in result.timings_ms) is not bool(reads)  # the known read saves the recogniser's call


def test_no_plate_is_no_text_and_a_null_column(plated: LoadedArchive) -> None:
    sink = RowRecorder()
    engine = PipelineEngine(plated, sink)
    try:
        result = asyncio.run(engine.process(_scene(""), FrameContext("d;c", "d")))
    finally:
        engine.close()
    assert "license_plate" not in result.classified_fields()
    assert result.all_nodes()["plate_ocr"].fields() == {"text": None, "confidence": None, "license_plate": None}
    assert [row["license_character"] for row in sink.rows] == [None]  # NULL, never '' (nor a guess)


def _unreadable_scene(kind: str) -> np.ndarray:
    """A car the detector finds whose plate cannot be read: none at all, or one blurred past reading."""
    rng = np.random.default_rng(37)
    image = scenes.render_background(rng, clutter=0)
    if kind == "no plate":
        scenes.render_car_at(image, 150, 170, 340, "Toyota", "Sedan", True, (40, 40, 200))
    else:
        style = plates.PlateStyle(plates.FONTS[1], plates.PLATE_COLOURS[0], 0.88, 3.8, 1.0, 0.09)
        car = plates.render_car_with_plate_at(image, 150, 170, 340, "Toyota", "Sedan", "KL 482 TX", style, True,
                                              (40, 40, 200))
        x1, y1, x2, y2 = car.plate_box
        image[y1:y2, x1:x2] = cv2.GaussianBlur(image[y1:y2, x1:x2], (0, 0), 6.0)
    return plates.degrade(image, rng, blur=0.4, noise=2.0, jpeg_quality=90)


SCENES: dict[str, tuple[Callable[[], np.ndarray], str | None]] = {
    "a readable plate": (lambda: _scene("KL 482 TX"), "KL482TX"),
    "a blank plate": (lambda: _scene(""), None),
    "a plate blurred past reading": (lambda: _unreadable_scene("blurred"), None),
    "no plate": (lambda: _unreadable_scene("no plate"), None),
}


@pytest.mark.parametrize("durable", [False, True], ids=["direct", "outbox"])
@pytest.mark.parametrize("what", list(SCENES))
async def test_the_row_gets_the_plate_or_null_in_the_real_database(plated: LoadedArchive, what: str, durable: bool,
                                                                   tmp_path: Path,
                                                                   pg: psycopg.Connection[Any]) -> None:
    """``"license_character": "{plate_ocr.text}"`` into the real PostgreSQL, straight and through the action
    outbox (which keeps a write as JSON on disk): the plate's text, or NULL (not '') when none is read."""
    render, expected = SCENES[what]
    display_id = f"test-plate-{uuid.uuid4().hex[:8]}"
    async with real_sink(plated.config, tmp_path, durable=durable, client_name="test-ocr-nodes") as writes:
        engine = PipelineEngine(plated, writes.sink)
        try:
            result = await engine.process(render(), FrameContext(f"{display_id};cam-1", display_id))
            dead = await writes.drained()
        finally:
            engine.close()
    try:
        assert result.status == "detected" and result.failed_actions == [], result
        assert dead == []
        assert result.classified_fields().get("license_plate") == expected
        rows = pg.execute("SELECT session_id, license_character, license_character IS NULL, car_brand IS NOT NULL "
                          "FROM gas_station_1.car_frontal_info WHERE display_id = %s", (display_id,)).fetchall()
        assert rows == [(result.session_id, expected, expected is None, True)]
    finally:
        pg.execute("DELETE FROM gas_station_1.car_frontal_info WHERE display_id = %s", (display_id,))
        delete_keys(REDIS_URL, f"inference:{display_id}:*")


CLIP = [("Toyota", "Sedan", (40, 40, 200), "KL 482 TX"), ("Ford", "Pickup", (235, 235, 235), "7ABC123"),
        ("Honda", "Sedan", (200, 200, 200), ""), ("BMW", "SUV", (30, 30, 30), "AB12 CDE")]  # Honda: a blank plate


def test_each_visit_of_a_plated_clip_carries_its_plate_into_the_event_and_the_row(plated: LoadedArchive) -> None:
    """The pod's path (``DisplayProcessor``: no change gate here, every frame runs): every frame through the
    pipeline and the visit tracker; each announcement's best frame through the pipeline again with the visit's
    voted plate, writing the row. A visit with no readable plate carries none and writes None (NULL)."""
    replay = replay_clip(plated, CLIP)
    announced = replay.announced
    expected = [car.value or None for car in replay.truth]
    last_by_visit = {announcement.decision.visit_id: announcement.decision.fields for announcement in announced}
    assert [fields.get("license_plate") for fields in last_by_visit.values()] == expected
    first = replay.first_announcements
    assert [announcement.decision.fields.get("license_plate") for announcement in first] == expected
    assert all(float(announcement.decision.fields["license_plate_confidence"]) >= 0.8 for announcement in first
               if "license_plate" in announcement.decision.fields)
    assert "license_plate_confidence" not in first[2].decision.fields
    assert [row["license_character"] for row in replay.rows] == expected
    # A voted plate is written as voted, not read again on the best frame (a visit with no read at all reads it).
    assert all("plate_ocr" not in announcement.written.timings_ms for announcement in first
               if announcement.written is not None and "license_plate" in announcement.decision.fields)
