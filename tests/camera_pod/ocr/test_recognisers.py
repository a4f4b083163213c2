"""The recogniser runs offline on the models inside the rapidocr wheel; an archive's own model is checked at load."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import rapidocr

from camera_pod.ocr import recognisers
from tests.fixtures import plates, scenes

# In a fresh interpreter with every socket and RapidOCR's downloader refused: load the recogniser, read a plate.
_OFFLINE_PROBE = """
import socket, sys
sys.path.append(sys.argv[1])  # appended: the repository's operator/ must not hide the stdlib's
def refused(*args, **kwargs):
    raise OSError("network access refused by the test")
socket.socket.connect = socket.socket.connect_ex = refused
socket.create_connection = socket.getaddrinfo = refused
import requests
from rapidocr.utils.download_file import DownloadFile
requests.Session.request = refused
DownloadFile.run = classmethod(refused)
import cv2
import numpy as np
from camera_pod.ocr import recognisers
from tests.fixtures import plates
image = np.full((90, 260, 3), 90, np.uint8)
plates.draw_plate(image, (10, 0, 250, 90), "AB 123 CD", plates.PlateStyle(0, (245, 245, 245), 0.9, 3.6, 0.0, 0.09))
print("|".join(line.text for line in recognisers.Recogniser(threads=1).lines(image)))
"""
REPOSITORY = Path(__file__).parents[3]


def test_it_loads_and_reads_with_the_network_refused() -> None:
    probe = subprocess.run([sys.executable, "-P", "-c", _OFFLINE_PROBE, str(REPOSITORY)], capture_output=True,
                           text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "AB 123 CD"


def test_its_config_names_the_bundled_models_and_no_download_dir(recogniser: recognisers.Recogniser,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise OSError("network access refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refused)
    detection, recognition = recogniser.model_paths
    assert detection == recognisers.BUNDLED_DETECTION and recognition == recognisers.BUNDLED_RECOGNITION
    for model in (detection, recognition):  # inside the installed wheel
        assert model.is_file() and model.parent == Path(rapidocr.__file__).parent / "models"
    assert recogniser._engine.cfg.Global.model_root_dir == str(recognisers.MODELS_DIR)
    metadata = {prop.key for prop in onnx.load(str(recognition), load_external_data=False).metadata_props}
    assert "character" in metadata  # the dictionary travels in the model: nothing to fetch
    assert recogniser.lines(np.full((64, 64, 3), 127, np.uint8)) == []  # runs with the socket refused


def test_threads_are_bounded(recogniser: recognisers.Recogniser) -> None:
    assert 1 <= recogniser.threads <= recognisers.DEFAULT_THREADS
    assert recogniser._engine.cfg.EngineConfig.onnxruntime.intra_op_num_threads == recogniser.threads


def test_the_bundled_recogniser_is_loaded_once(pool: recognisers.Recognisers,
                                               recogniser: recognisers.Recogniser) -> None:
    assert pool.load(None) is recogniser is pool.bundled()


def test_a_recognition_model_without_its_dictionary_is_refused(tmp_path: Path) -> None:
    model = onnx.load(str(recognisers.BUNDLED_RECOGNITION))
    del model.metadata_props[:]
    bare = tmp_path / "rec.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(recognisers.RecogniserError, match="no 'character' metadata"):
        recognisers.Recognisers().load(bare)


@pytest.mark.parametrize(("content", "problem"), [
    (b"not a model", "not an ONNX recognition model"),
    (None, "no such recognition model"),
])
def test_a_broken_recognition_model_is_refused(tmp_path: Path, content: bytes | None, problem: str) -> None:
    path = tmp_path / "rec.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(recognisers.RecogniserError, match=problem):
        recognisers.Recognisers().load(path)


def test_an_archive_model_with_its_dictionary_is_loaded_the_same_way(tmp_path: Path,
                                                                    pool: recognisers.Recognisers) -> None:
    own = tmp_path / "rec.onnx"
    own.write_bytes(recognisers.BUNDLED_RECOGNITION.read_bytes())  # stands in for another script's model
    reader = pool.load(own)
    assert reader is not pool.bundled() and reader.model_paths == (recognisers.BUNDLED_DETECTION, own)
    assert recognisers.Recognisers(threads=2).load(own).threads == min(2, len(os.sched_getaffinity(0)))
    rng = np.random.default_rng(5)
    image = scenes.render_background(rng, clutter=0)
    car = plates.render_car_with_plate_at(image, 150, 150, 360, "Ford", "Sedan", "KL 482 TX", plates.random_style(rng))
    assert "KL482TX" in {plates.plate_value(line.text) for line in reader.lines(scenes.crop(image,
                                                                                             car.car.frontal_box))}


def test_lines_too_narrow_for_the_wanted_text_are_not_recognised(recogniser: recognisers.Recogniser) -> None:
    image = np.full((120, 300, 3), 235, np.uint8)
    cv2.putText(image, "8", (130, 95), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (20, 20, 20), 6, cv2.LINE_AA)
    assert [line.text for line in recogniser.lines(image)] == ["8"]
    assert recogniser.lines(image, min_aspect=2.0) == []  # (what a 4-character minimum asks: 0.5 x 4)


def _plate_crop(printed: str) -> np.ndarray:
    """A plate as a plate detector crops it (its box, a little loose), degraded as a camera's."""
    rng = np.random.default_rng(9)
    image = scenes.render_background(rng, clutter=0)
    style = plates.PlateStyle(plates.FONTS[0], plates.PLATE_COLOURS[0], 0.8, 4.4, 0.0, 0.09)
    car = plates.render_car_with_plate_at(image, 150, 150, 320, "Ford", "Sedan", printed, style)
    x1, y1, x2, y2 = car.plate_box
    camera_view = plates.degrade(image, rng, blur=0.4, noise=2.0, jpeg_quality=85)
    return scenes.crop(camera_view, (x1 - 2, y1 - 2, x2 + 2, y2 + 2))


def test_a_plate_crop_is_read_whole_as_one_line(recogniser: recognisers.Recogniser) -> None:
    plate = _plate_crop("KL 482 TX")
    (line,) = recogniser.whole_line(plate, min_aspect=2.0)
    assert plates.plate_value(line.text) == "KL482TX" and line.confidence >= 0.8
    assert line.box == (0.0, 0.0, float(plate.shape[1]), float(plate.shape[0]))


def test_a_blank_or_too_narrow_crop_read_whole_gives_no_line_of_text(recogniser: recognisers.Recogniser) -> None:
    blank = recogniser.whole_line(_plate_crop(""), min_aspect=2.0)
    assert all(line.confidence < 0.8 or len(plates.plate_value(line.text)) < 4 for line in blank), blank
    plate = _plate_crop("KL 482 TX")
    assert recogniser.whole_line(plate[:, : plate.shape[0]], min_aspect=2.0) == []  # square: not a line of 4
    assert recogniser.whole_line(np.full((1, 40, 3), 200, np.uint8)) == []
