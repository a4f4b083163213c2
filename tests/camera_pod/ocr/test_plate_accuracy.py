"""Plate accuracy on held-out synthetic plates: per frame, and per visit once the visit's reads are voted.

Each held-out visit is one car at the pump over ``FRAMES`` frames (``tests/fixtures/plates.py``: its own seed,
fonts, sizes, plate colours, rotation, blur, noise, JPEG; cars 260-420 px long in 640x480, the fixture video's
are 300), read on its Frontal crop with the default rules, voted as a visit votes (``camera_pod.visits``).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

from camera_pod.inference.detections import Box
from camera_pod.ocr.reading import TextReader
from camera_pod.visits import Visit
from tests.fixtures import plates

VISITS = 50
FRAMES = 6
MIN_VISIT_ACCURACY = 0.9


def test_voted_plates_are_exact_for_nine_visits_in_ten(plate_reader: TextReader,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    right_frames = frames = right_visits = 0
    timings_ms = []
    for held_out in plates.held_out_visits(VISITS, FRAMES):
        visit = Visit("held-out", 0.0, 0.0, Box("Car", 1.0, held_out.frames[0].car_box))
        for shot in held_out.frames:
            started = time.perf_counter()
            read = plate_reader.read(shot.crop)
            timings_ms.append((time.perf_counter() - started) * 1000)
            assert read.text is None or (read.confidence or 0) >= plate_reader.rules.min_confidence
            frames += 1
            right_frames += read.text == held_out.value
            visit.read(Box("Car", 0.9, shot.car_box), {"license_plate": read})
        right_visits += visit.texts().get("license_plate") == held_out.value
    per_visit, per_frame = right_visits / VISITS, right_frames / frames
    with capsys.disabled():
        print(f"\nplates: exact per visit {right_visits}/{VISITS} = {per_visit:.3f} ({FRAMES} frames voted), "
              f"per frame {right_frames}/{frames} = {per_frame:.3f}; OCR {statistics.median(timings_ms):.1f} ms "
              f"per crop (median; p90 {np.percentile(timings_ms, 90):.1f})")
    assert per_visit >= MIN_VISIT_ACCURACY
    assert per_visit >= per_frame  # what voting buys


UNREADABLE = dict(plates.unreadable_crops())


@pytest.mark.parametrize("what", list(UNREADABLE))
def test_an_unreadable_or_absent_plate_reads_nothing(plate_reader: TextReader, what: str) -> None:
    read = plate_reader.read(UNREADABLE[what])
    assert (read.text, read.confidence) == (None, None), f"{what}: read {read}"
