"""Plate accuracy on held-out synthetic plates: per frame, and per visit once the visit's reads are voted.

Each held-out visit is one car at the pump over ``FRAMES`` frames (``tests/fixtures/plates.py``: its own seed,
fonts, sizes, plate colours, rotation, blur, noise, JPEG; cars 260-420 px long in 640x480, the fixture video's
are 300), read with the default rules on its Frontal crop (a text node on Frontal) and on the plate that the fixture's
plate detector finds on that crop (gas_station_plates.mpta's way), voted as a visit votes (``camera_pod.visits``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest

from camera_pod.inference.detections import Box
from camera_pod.inference.models import Model
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.ocr.reading import NOTHING, TextRead, TextReader
from camera_pod.pipeline import cropping
from camera_pod.visits import Visit
from tests.conftest import FIXTURES
from tests.fixtures import plates

VISITS = 50
FRAMES = 6
MIN_VISIT_ACCURACY = 0.9
PLATE_MIN_CONFIDENCE = 0.5  # the plate detector branch's minConfidence in gas_station_plates.mpta


@pytest.fixture(scope="module")
def plates_archive(tmp_path_factory: pytest.TempPathFactory) -> LoadedArchive:
    """gas_station_plates.mpta, as a camera pod loads it."""
    return ArchiveStore(tmp_path_factory.mktemp("cache")).load_blocking(str(FIXTURES / "gas_station_plates.mpta"))


def _on_the_plate(detector: Model, reader: TextReader) -> Callable[[np.ndarray], TextRead]:
    """The plates archive's way: its plate detector on the Frontal crop, its text node (the plate read whole as one
    line) on the plate it finds."""
    def read(front: np.ndarray) -> TextRead:
        found = detector.detect(front, classes=None, min_confidence=PLATE_MIN_CONFIDENCE).best_per_class().get(
            "LicensePlate")
        plate = cropping.crop(front, found.xyxy) if found is not None else None
        return reader.read(plate) if plate is not None else NOTHING
    return read


@pytest.mark.parametrize("way", ["on the Frontal crop", "on the plate detector's plate"])
def test_voted_plates_are_exact_for_nine_visits_in_ten(way: str, plate_reader: TextReader,
                                                       plates_archive: LoadedArchive,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    reader = plate_reader.read if way == "on the Frontal crop" else _on_the_plate(
        plates_archive.models["license_plate_detection_v1"], plates_archive.readers["plate_ocr"])
    right_frames = frames = right_visits = 0
    timings_ms = []
    for held_out in plates.held_out_visits(VISITS, FRAMES):
        visit = Visit("held-out", 0.0, 0.0, Box("Car", 1.0, held_out.frames[0].car_box))
        for shot in held_out.frames:
            started = time.perf_counter()
            read = reader(shot.crop)
            timings_ms.append((time.perf_counter() - started) * 1000)
            assert read.text is None or (read.confidence or 0) >= plate_reader.rules.min_confidence
            frames += 1
            right_frames += read.text == held_out.value
            visit.read(Box("Car", 0.9, shot.car_box), {"license_plate": read})
        right_visits += visit.texts().get("license_plate") == held_out.value
    per_visit, per_frame = right_visits / VISITS, right_frames / frames
    with capsys.disabled():
        print(f"\nplates {way}: exact per visit {right_visits}/{VISITS} = {per_visit:.3f} ({FRAMES} frames voted), "
              f"per frame {right_frames}/{frames} = {per_frame:.3f}; {statistics.median(timings_ms):.1f} ms "
              f"per front (median; p90 {np.percentile(timings_ms, 90):.1f})")
    assert per_visit >= MIN_VISIT_ACCURACY
    assert per_visit >= per_frame  # what voting buys


UNREADABLE = dict(plates.unreadable_crops())


@pytest.mark.parametrize("what", list(UNREADABLE))
def test_an_unreadable_or_absent_plate_reads_nothing(plate_reader: TextReader, what: str) -> None:
    read = plate_reader.read(UNREADABLE[what])
    assert (read.text, read.confidence) == (None, None), f"{what}: read {read}"
