"""gas_station_plates.mpta's way of reading plates: a plate detector on the Frontal crop, and the text node on the
plate it finds. A front without a plate costs the small detector only: the text reader never runs on it."""

from __future__ import annotations

import asyncio
import json
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from camera_pod.mpta.errors import MptaError
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.ocr.reading import TextRead
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import FrameResult
from tests.conftest import FIXTURES, REDIS_URL
from tests.fixtures import plates, scenes
from tests.support.action_sinks import RowRecorder, real_sink
from tests.support.clip_replay import replay_clip
from tests.support.redis_keys import delete_keys

PLATES_MPTA = FIXTURES / "gas_station_plates.mpta"
PLATE_DETECTOR = "license_plate_detection_v1"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> LoadedArchive:
    return ArchiveStore(tmp_path_factory.mktemp("cache")).load_blocking(str(PLATES_MPTA))


def _car(printed: str | None, seed: int = 31) -> np.ndarray:
    """A Toyota sedan at the pump with a plate reading ``printed`` ("": a blank plate; None: no plate at all)."""
    rng = np.random.default_rng(seed)
    image = scenes.render_background(rng, clutter=0)
    if printed is None:
        scenes.render_car_at(image, 150, 170, 340, "Toyota", "Sedan", True, (40, 40, 200))
    else:
        style = plates.PlateStyle(plates.FONTS[1], plates.PLATE_COLOURS[0], 0.8, 4.2, 1.0, 0.09)
        plates.render_car_with_plate_at(image, 150, 170, 340, "Toyota", "Sedan", printed, style, True, (40, 40, 200))
    return plates.degrade(image, rng, blur=0.4, noise=2.0, jpeg_quality=90)


def _run(archive: LoadedArchive, image: np.ndarray,
         reads: Mapping[str, TextRead] | None = None) -> tuple[FrameResult, list[dict[str, str | None]]]:
    sink = RowRecorder()
    engine = PipelineEngine(archive, sink)
    try:
        result = asyncio.run(engine.process(image, FrameContext("d;c", "d", reads=reads or {})))
    finally:
        engine.close()
    assert result.status == "detected", result.reason
    return result, sink.rows


def test_the_plate_is_found_on_the_front_then_read_into_the_row(archive: LoadedArchive) -> None:
    result, rows = _run(archive, _car("KL 482 TX"))
    nodes = result.all_nodes()
    assert set(nodes[PLATE_DETECTOR].regions) == {"LicensePlate"}
    assert nodes["plate_ocr"].reading is not None and nodes["plate_ocr"].reading.text == "KL482TX"
    assert result.classified_fields()["license_plate"] == "KL482TX"
    assert [row["license_character"] for row in rows] == ["KL482TX"]  # {plate_ocr.text}: a node under a branch


def test_a_front_without_a_plate_never_runs_the_text_reader(archive: LoadedArchive) -> None:
    result, rows = _run(archive, _car(None))
    nodes = result.all_nodes()
    assert PLATE_DETECTOR in result.timings_ms and not nodes[PLATE_DETECTOR].regions
    assert "plate_ocr" not in result.timings_ms and "plate_ocr" not in nodes
    assert "license_plate" not in result.classified_fields()
    # The row is not held back by a missing plate: the classifiers' fields; the plate's column is left out (as the
    # original leaves out a field whose branch gave nothing), so the row keeps NULL there (the real database: below).
    assert len(rows) == 1 and "license_character" not in rows[0] and rows[0]["car_brand"] is not None


def test_a_blank_plate_is_found_and_reads_nothing(archive: LoadedArchive) -> None:
    result, rows = _run(archive, _car(""))
    nodes = result.all_nodes()
    assert set(nodes[PLATE_DETECTOR].regions) == {"LicensePlate"}
    assert nodes["plate_ocr"].reading is not None and nodes["plate_ocr"].reading.text is None
    assert [row["license_character"] for row in rows] == [None]


def test_a_voted_plate_is_written_even_where_the_detector_misses_it_on_the_written_frame(
        archive: LoadedArchive) -> None:
    """The visit's write runs on its best frame with the voted plate; that frame's own plate detection does not
    decide whether the row gets it."""
    result, rows = _run(archive, _car(None), reads={"plate_ocr": TextRead("KL482TX", 0.97, "KL482TX")})
    assert not result.all_nodes()[PLATE_DETECTOR].regions
    assert [row["license_character"] for row in rows] == ["KL482TX"]
    _result, rows = _run(archive, _car(None), reads={"plate_ocr": TextRead(None, None)})  # voted: no majority
    assert [row["license_character"] for row in rows] == [None]


CLIP = [("Toyota", "Sedan", (40, 40, 200), "KL 482 TX"), ("Ford", "Pickup", (235, 235, 235), None),
        ("Honda", "Sedan", (200, 200, 200), ""), ("BMW", "SUV", (30, 30, 30), "AB12 CDE")]


def test_each_visit_carries_its_plate_and_a_car_without_one_costs_no_read(archive: LoadedArchive) -> None:
    """The pod's path over a clip (every frame runs): each visit's plate in its announcement and its row; the car
    without a plate is announced with none, and the text reader never ran on any of its frames."""
    replay = replay_clip(archive, CLIP)
    truth = replay.truth
    read_on = [index for index, processed in enumerate(replay.processed) if "plate_ocr" in processed.result.timings_ms]
    expected = [car.value or None for car in truth]
    assert [announcement.decision.fields.get("license_plate") for announcement in replay.first_announcements] == \
        expected
    assert [row.get("license_character") for row in replay.rows] == expected
    plateless = truth[1]
    assert not [index for index in read_on if plateless.first_frame <= index <= plateless.last_frame]
    assert [index for index in read_on if truth[0].first_frame <= index <= truth[0].last_frame]


@pytest.mark.parametrize(("printed", "expected"), [("KL 482 TX", "KL482TX"), (None, None)], ids=["plate", "none"])
async def test_the_real_row_gets_the_plate_or_null(archive: LoadedArchive, printed: str | None, expected: str | None,
                                                   tmp_path: Path, pg: psycopg.Connection[Any]) -> None:
    display_id = f"test-plate-det-{uuid.uuid4().hex[:8]}"
    async with real_sink(archive.config, tmp_path, durable=False, client_name="test-plate-detector") as writes:
        engine = PipelineEngine(archive, writes.sink)
        try:
            result = await engine.process(_car(printed), FrameContext(f"{display_id};cam-1", display_id))
            assert await writes.drained() == []
        finally:
            engine.close()
    try:
        assert result.status == "detected" and result.failed_actions == [], result
        rows = pg.execute("SELECT session_id, license_character, car_brand IS NOT NULL "
                          "FROM gas_station_1.car_frontal_info WHERE display_id = %s", (display_id,)).fetchall()
        assert rows == [(result.session_id, expected, True)]
    finally:
        pg.execute("DELETE FROM gas_station_1.car_frontal_info WHERE display_id = %s", (display_id,))
        delete_keys(REDIS_URL, f"inference:{display_id}:*")


@pytest.mark.parametrize(("template", "problem"), [
    ("{plate_ocrx.text}", "'plate_ocrx' is not a branch of this node (nor under one)"),
    ("{plate_ocr.brand}", "branch 'plate_ocr' has no field 'brand'"),
])
def test_a_template_naming_a_node_under_a_branch_is_checked_at_load(template: str, problem: str,
                                                                    tmp_path: Path) -> None:
    with zipfile.ZipFile(PLATES_MPTA) as source:
        members = {name: source.read(name) for name in source.namelist()}
    document = json.loads(members["pipeline.json"])
    document["pipeline"]["parallelActions"][0]["fields"]["license_character"] = template
    edited = tmp_path / "edited.mpta"
    with zipfile.ZipFile(edited, "w") as archive:
        for name, data in {**members, "pipeline.json": json.dumps(document).encode()}.items():
            archive.writestr(name, data)
    with pytest.raises(MptaError) as caught:
        ArchiveStore(tmp_path / "cache").load_blocking(str(edited))
    assert [str(issue) for issue in caught.value.issues] == [
        f"pipeline.parallelActions[0].fields.license_character: placeholder {template}: {problem}"
        + ("" if "brand" not in template else " (has: confidence, license_plate, text)")]


def test_the_fixture_archive_has_the_plate_detector(archive: LoadedArchive) -> None:
    assert tuple(archive.models[PLATE_DETECTOR].names) == ("LicensePlate",)
