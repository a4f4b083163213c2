"""The int8 path: the fixture archive quantised gives float32's answers, and every visit of the fixture video is
still found with the right brand and body type; calibration on archive images or on the camera's own frames;
the ``auto`` rules; the verdict a restarted pod reuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from camera_pod.inference import calibration, onnx_backend, parity, precision, quantisation
from camera_pod.inference.models import Model
from camera_pod.inference.onnx_backend import OnnxModel
from camera_pod.inference.postprocessing import RawBoxes
from camera_pod.inference.precision import PrecisionPolicy
from camera_pod.inference.selection import InferenceOptions, OnnxLoader
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.pipeline import cropping
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.visits import VisitDecision, VisitTracker
from tests.camera_pod.inference.conftest import Checkpoints, VideoFrame
from tests.camera_pod.test_tracking import video_frames as all_video_frames
from tests.conftest import FIXTURES
from tests.fixtures.scenes import render_scene

TRUTH = json.loads((FIXTURES / "media" / "cars.json").read_text())
CALIBRATION_SEED = 31337  # rendered scenes unlike the training (make_models.SEED) and held-out ones (424242)
CALIBRATION_SCENES = 16
MIN_CONFIDENCE = 0.5  # the fixture pipeline's threshold
EVERY_MODEL = PrecisionPolicy("auto", min_fp32_ms=0.0, min_speedup=0.0)  # auto, for models of any size and speed


def _jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="session")
def calibration_members(fixture_pipeline: dict[str, Any]) -> dict[str, bytes]:
    """``calibration/`` images for the fixture archive: rendered forecourts for the detector, their Frontal and
    Car crops for the brand and body-type classifiers (never frames of the video the tests then look at)."""
    root = fixture_pipeline["pipeline"]
    stems = {branch["cropClass"]: Path(branch["modelFile"]).stem for branch in root["branches"]}
    rng = np.random.default_rng(CALIBRATION_SEED)
    members = {}
    for index in range(CALIBRATION_SCENES):
        image, cars = render_scene(rng)
        members[f"calibration/scene-{index:02d}.jpg"] = _jpeg(image)
        for number, car in enumerate(cars):
            for crop_class, box in (("Frontal", car.frontal_box), ("Car", car.car_box)):
                crop = cropping.crop(image, box)
                assert crop is not None
                members[f"calibration/{stems[crop_class]}/{index:02d}-{number}.jpg"] = _jpeg(crop)
    return members


def _write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="session")
def calibrated_mpta(tmp_path_factory: pytest.TempPathFactory, fixture_members: dict[str, bytes],
                    calibration_members: dict[str, bytes]) -> Path:
    return _write_archive(tmp_path_factory.mktemp("calibrated") / "calibrated.mpta",
                          {**fixture_members, **calibration_members})


@pytest.fixture(scope="session")
def calibrated_checkpoints(tmp_path_factory: pytest.TempPathFactory, checkpoints: Checkpoints,
                           calibration_members: dict[str, bytes]) -> Checkpoints:
    """The fixture checkpoints in a folder laid out as an extracted archive with calibration images."""
    folder = tmp_path_factory.mktemp("calibrated-checkpoints")
    for name, data in calibration_members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    for path in (checkpoints.detector, checkpoints.brand, checkpoints.body_type):
        (folder / path.name).write_bytes(path.read_bytes())
    return Checkpoints(folder / checkpoints.detector.name, folder / checkpoints.brand.name,
                       folder / checkpoints.body_type.name)


@pytest.fixture(scope="session")
def int8_models(calibrated_checkpoints: Checkpoints, onnx_cache: Path) -> dict[str, Model]:
    load = OnnxLoader(onnx_cache, InferenceOptions(threads=2, precision="int8"))
    return {"detector": load(calibrated_checkpoints.detector), "brand": load(calibrated_checkpoints.brand),
            "body_type": load(calibrated_checkpoints.body_type)}


@pytest.fixture
def quantisations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every quantisation that really runs, by target."""
    done: list[Path] = []
    real = quantisation.quantise

    def counting(fp32: Path, target: Path, blobs: Any, **options: Any) -> None:
        done.append(target)
        real(fp32, target, blobs, **options)

    monkeypatch.setattr(quantisation, "quantise", counting)
    return done


def _boxes(xyxy: list[list[float]], confidence: list[float], class_id: list[int]) -> RawBoxes:
    return RawBoxes(np.array(xyxy, np.float32).reshape(-1, 4), np.array(confidence, np.float32),
                    np.array(class_id, np.int64))


# ---- the quantised fixture archive agrees with float32 ---------------------------------------------

def test_the_archive_images_make_every_model_int8_at_load(int8_models: dict[str, Model]) -> None:
    for role, model in int8_models.items():
        assert isinstance(model, OnnxModel) and model.precision == "int8", role
        upgrade = precision.upgrade_of(model)
        assert upgrade is not None and upgrade.verdict is not None and upgrade.verdict.source == "archive", role
        assert model.observer is None  # nothing left to collect


def test_int8_detections_agree_with_fp32_on_the_fixture_video(int8_models: dict[str, Model],
                                                              onnx_models: dict[str, Model],
                                                              video_frames: list[VideoFrame]) -> None:
    """At the pipeline's threshold, box for box: the same boxes (same class, IoU ≥ 0.7) on every frame."""
    agreement, worst_iou, cars = parity.Agreement(), 1.0, 0
    for frame in video_frames:
        expected = onnx_models["detector"].detect(frame.image, classes=None, min_confidence=MIN_CONFIDENCE)
        actual = int8_models["detector"].detect(frame.image, classes=None, min_confidence=MIN_CONFIDENCE)
        agreement += parity.detections(RawBoxes(expected.xyxy, expected.confidence, expected.class_id),
                                       RawBoxes(actual.xyxy, actual.confidence, actual.class_id))
        if len(expected) and len(actual):
            worst_iou = min(worst_iou, float(parity.pairwise_iou(expected.xyxy, actual.xyxy).max(axis=1).min()))
        cars += frame.truth is not None
    print(f"int8 vs fp32 detections: {agreement}, worst best-IoU {worst_iou:.3f}")
    assert cars >= 20 and agreement.compared >= 60
    assert agreement.share >= 0.98 and worst_iou >= 0.8


@pytest.mark.parametrize(("role", "key"), [("brand", "frontal_box"), ("body_type", "car_box")])
def test_int8_classifiers_agree_with_fp32_on_the_video_crops(role: str, key: str, int8_models: dict[str, Model],
                                                             onnx_models: dict[str, Model],
                                                             video_frames: list[VideoFrame]) -> None:
    crops = [cropping.resize(crop, (64, 64)) for frame in video_frames if frame.truth and frame.truth[key]
             if (crop := cropping.crop(frame.image, tuple(frame.truth[key]))) is not None and min(crop.shape[:2]) >= 8]
    assert len(crops) >= 20
    same = sum(int8_models[role].classify(crop).class_name == onnx_models[role].classify(crop).class_name
               for crop in crops)
    print(f"int8 vs fp32 {role} top-1: {same}/{len(crops)}")
    assert same / len(crops) >= 0.95


# ---- every visit of the fixture video, through the pipeline, in int8 --------------------------------

async def _visits(archive: LoadedArchive) -> list[VisitDecision]:
    """The fixture video through the pipeline at its own 10 frames/s, and the visit tracker's decisions."""
    engine = PipelineEngine(archive, None)
    context = FrameContext(camera_id="d;c", display_id="d")
    tracker = VisitTracker(stable_frames=3, expected_interval_s=1 / TRUTH["fps"])
    decisions: list[VisitDecision] = []
    try:
        for index, image in enumerate(all_video_frames()):
            result = await engine.process(image, context, act=False)
            decisions += tracker.observe(result, image, captured_at=1_700_000_000.0 + index / TRUTH["fps"])
    finally:
        engine.close()
    return decisions


def assert_every_visit_found(decisions: list[VisitDecision]) -> None:
    """One announcement per car of cars.json, in order, whose final answer is the car's brand and body type."""
    expected = [{"brand": visit["brand"], "body_type": visit["body_type"]} for visit in TRUTH["visits"]]
    firsts = [decision for decision in decisions if not decision.update]
    summary = [(decision.fields, decision.update) for decision in decisions]
    assert len(firsts) == len(expected), f"visits found: {summary}"
    for first, truth in zip(firsts, expected, strict=True):
        final = [decision for decision in decisions if decision.visit_id == first.visit_id][-1]
        assert final.fields == truth, f"visits found: {summary}"


def _assert_int8(archive: LoadedArchive) -> None:
    assert {name: getattr(model, "precision", None) for name, model in archive.models.items()} == \
        dict.fromkeys(archive.models, "int8")


@pytest.fixture(scope="module")
def int8_visits(calibrated_mpta: Path, tmp_path_factory: pytest.TempPathFactory) -> list[VisitDecision]:
    cache = tmp_path_factory.mktemp("int8-visits")
    store = ArchiveStore(cache, load_model=OnnxLoader(cache, InferenceOptions(threads=2, precision="int8")))
    archive = store.load_blocking(str(calibrated_mpta))
    _assert_int8(archive)
    return asyncio.run(_visits(archive))


def test_every_visit_of_the_fixture_video_is_found_in_int8(int8_visits: list[VisitDecision]) -> None:
    assert_every_visit_found(int8_visits)


@pytest.mark.parametrize("visit", range(len(TRUTH["visits"])))
def test_the_visit_check_fails_when_a_visit_is_missed(int8_visits: list[VisitDecision], visit: int) -> None:
    """The check above is not vacuous: without any one car's announcements it fails."""
    brand = TRUTH["visits"][visit]["brand"]
    missed = [decision for decision in int8_visits if decision.fields.get("brand") != brand]
    with pytest.raises(AssertionError, match="visits found"):
        assert_every_visit_found(missed)


def test_without_archive_images_the_models_calibrate_on_the_camera_frames(fixture_mpta: Path, tmp_path: Path,
                                                                         quantisations: list[Path]) -> None:
    """An archive without calibration images: the models serve in float32 while keeping some of their inputs,
    quantise in the background once they have enough (detector: half with a car), then serve int8; a second
    pass over the video finds every visit in int8."""
    store = ArchiveStore(tmp_path, load_model=OnnxLoader(tmp_path, InferenceOptions(threads=2, precision="int8")))
    archive = store.load_blocking(str(fixture_mpta))
    assert quantisations == [] and all(model.observer is not None for model in archive.models.values())  # type: ignore[attr-defined]
    first_pass = asyncio.run(_visits(archive))
    for name, model in archive.models.items():
        upgrade = precision.upgrade_of(model)
        assert upgrade is not None and upgrade.settled.wait(120), name
        assert upgrade.verdict is not None and upgrade.verdict.source == "camera", name
    _assert_int8(archive)
    assert len(quantisations) == 3
    assert_every_visit_found(first_pass)  # the swap mid-video changed no answer
    assert_every_visit_found(asyncio.run(_visits(archive)))


def test_the_int8_session_is_opened_by_the_serving_thread_not_the_low_priority_one(
        calibrated_checkpoints: Checkpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        video_frames: list[VideoFrame]) -> None:
    """A session's thread pool keeps the priority of the thread that created it: the background quantisation
    (nice 10) must not leave the camera's int8 inference at that priority for good."""
    model = OnnxLoader(tmp_path, InferenceOptions(threads=2))(calibrated_checkpoints.detector)
    assert isinstance(model, OnnxModel) and model.precision == "fp32"
    int8 = tmp_path / "detector-int8.onnx"
    quantisation.quantise(model.path, int8, [model.prepare(f.image) for f in video_frames[::30]],
                          input_name=model.input_name, detector=True)
    opened_by: list[int] = []
    create = onnx_backend.create_session

    def recording(path: Path, **options: Any) -> Any:
        opened_by.append(threading.get_ident())
        return create(path, **options)

    monkeypatch.setattr(onnx_backend, "create_session", recording)
    background = threading.Thread(target=model.serve, args=(int8, "int8"))
    background.start()
    background.join()
    assert opened_by == [] and model.precision == "int8", "nothing opened by the background thread"
    assert len(model.detect(video_frames[5].image, classes=None, min_confidence=MIN_CONFIDENCE)) > 0
    assert opened_by == [threading.get_ident()], "opened by the thread that serves the model, at its next call"
    model.detect(video_frames[6].image, classes=None, min_confidence=MIN_CONFIDENCE)
    assert len(opened_by) == 1, "once"


# ---- the verdict kept beside the export -------------------------------------------------------------

def test_a_restarted_pod_serves_the_stored_int8_model_at_once(calibrated_checkpoints: Checkpoints, tmp_path: Path,
                                                              quantisations: list[Path]) -> None:
    first = OnnxLoader(tmp_path, InferenceOptions(threads=1, precision="int8"))(calibrated_checkpoints.detector)
    assert isinstance(first, OnnxModel) and first.precision == "int8" and len(quantisations) == 1
    verdict = calibration.read_verdict(first.path)
    assert verdict is not None and verdict.int8_file == quantisations[0].name
    assert verdict.agreement is not None and verdict.agreement >= 0.95
    again = OnnxLoader(tmp_path, InferenceOptions(threads=1, precision="int8"))(calibrated_checkpoints.detector)
    assert isinstance(again, OnnxModel) and again.precision == "int8" and len(quantisations) == 1
    fp32 = OnnxLoader(tmp_path, InferenceOptions(threads=1, precision="fp32"))(calibrated_checkpoints.detector)
    assert isinstance(fp32, OnnxModel) and fp32.precision == "fp32"


def test_a_stored_int8_file_that_does_not_open_is_quantised_again(calibrated_checkpoints: Checkpoints,
                                                                  tmp_path: Path, quantisations: list[Path]) -> None:
    load = OnnxLoader(tmp_path, InferenceOptions(threads=1, precision="int8"))
    load(calibrated_checkpoints.brand)
    quantisations[0].write_bytes(b"not a model")
    again = load(calibrated_checkpoints.brand)
    assert isinstance(again, OnnxModel) and again.precision == "int8"
    assert quantisations == [quantisations[0]] * 2 and quantisations[0].stat().st_size > 1000  # same inputs


def _failing(fp32: Path, *_: Any, **__: Any) -> None:
    raise quantisation.QuantisationError(f"{fp32.name}: int8 quantisation failed: boom")


def test_a_failed_quantisation_at_load_still_loads_the_model_in_fp32(calibrated_checkpoints: Checkpoints,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quantisation, "quantise", _failing)
    model = OnnxLoader(tmp_path, InferenceOptions(threads=1, precision="int8"))(calibrated_checkpoints.detector)
    upgrade = precision.upgrade_of(model)
    assert isinstance(model, OnnxModel) and model.precision == "fp32"
    assert upgrade is not None and upgrade.verdict is not None and "boom" in upgrade.verdict.reason


def test_a_failed_quantisation_keeps_the_camera_on_fp32(checkpoints: Checkpoints, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        video_frames: list[VideoFrame]) -> None:
    monkeypatch.setattr(quantisation, "quantise", _failing)
    model = OnnxLoader(tmp_path, InferenceOptions(threads=1, precision="int8"))(checkpoints.detector)
    upgrade = precision.upgrade_of(model)
    assert upgrade is not None
    for image in all_video_frames():
        model.detect(image, classes=None, min_confidence=MIN_CONFIDENCE)
    assert upgrade.settled.wait(60) and upgrade.verdict is not None
    assert isinstance(model, OnnxModel) and model.precision == "fp32" and "boom" in upgrade.verdict.reason
    assert len(model.detect(video_frames[5].image, classes=None, min_confidence=MIN_CONFIDENCE)) > 0


# ---- auto ------------------------------------------------------------------------------------------

def _upgrade(checkpoint: Path, cache: Path, policy: PrecisionPolicy) -> precision.Int8Upgrade:
    model = OnnxLoader(cache, InferenceOptions(threads=1))(checkpoint)
    assert isinstance(model, OnnxModel)
    return precision.Int8Upgrade(model, policy, contextlib.nullcontext)


def test_auto_serves_int8_when_it_agrees_and_pays(checkpoints: Checkpoints, tmp_path: Path,
                                                  video_frames: list[VideoFrame]) -> None:
    upgrade = _upgrade(checkpoints.detector, tmp_path, EVERY_MODEL)
    upgrade.start(checkpoints.detector)
    verdict = precision.calibrate(upgrade.model, [frame.image for frame in video_frames[::3]])
    assert verdict is not None and verdict.precision == "int8" and upgrade.model.precision == "int8"
    assert verdict.source == "camera" and verdict.agreement is not None and verdict.agreement >= 0.95
    assert precision.calibrate(upgrade.model, [video_frames[0].image]) is None  # decided: nothing more to take


def test_auto_keeps_fp32_when_the_frames_show_nothing_to_compare(checkpoints: Checkpoints, tmp_path: Path,
                                                                 video_frames: list[VideoFrame]) -> None:
    """Frames without a car: the int8 form cannot be checked (and, calibrated on them, it finds no car at all)."""
    upgrade = _upgrade(checkpoints.detector, tmp_path, EVERY_MODEL)
    upgrade.start(checkpoints.detector)
    empty = [frame.image for frame in video_frames if frame.truth is None]
    verdict = precision.calibrate(upgrade.model, empty)
    assert verdict is not None and verdict.precision == "fp32" and "too few answers" in verdict.reason
    assert upgrade.model.precision == "fp32"


def test_auto_decides_small_models_from_their_service_times_without_quantising(
        checkpoints: Checkpoints, tmp_path: Path, quantisations: list[Path], video_frames: list[VideoFrame]) -> None:
    upgrade = _upgrade(checkpoints.brand, tmp_path, PrecisionPolicy("auto", min_fp32_ms=1000.0, cpu_flags=("x",)))
    upgrade.start(checkpoints.brand)
    crop = cropping.resize(video_frames[5].image[200:300, 300:400], (64, 64))
    for _ in range(precision.TIMED_CALLS + 1):
        upgrade.model.classify(crop)
    assert upgrade.settled.is_set() and upgrade.verdict is not None and "too small" in upgrade.verdict.reason
    assert quantisations == [] and upgrade.model.observer is None
    stored = calibration.read_verdict(upgrade.model.path)
    assert stored is not None and stored.precision == "fp32"


@pytest.mark.parametrize(("providers", "flags", "refused"), [
    (["CPUExecutionProvider"], ("avx512_vnni",), None),
    (["CPUExecutionProvider"], ("amx_int8",), None),
    (["CPUExecutionProvider"], (), "no int8 dot product"),
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ("avx512_vnni",), "CUDAExecutionProvider"),
])
def test_auto_looks_at_the_machine_first(providers: list[str], flags: tuple[str, ...], refused: str | None) -> None:
    refusal = precision.machine_refusal(PrecisionPolicy("auto", cpu_flags=flags), providers)
    assert refusal is None if refused is None else refused in str(refusal)


@pytest.mark.parametrize(("agreed", "evidence", "fp32_ms", "int8_ms", "chosen", "why"), [
    (100, 100, 30.0, 12.0, "int8", "agrees and is faster"),
    (94, 100, 30.0, 12.0, "fp32", "disagrees"),
    (5, 5, 30.0, 12.0, "fp32", "too few answers"),
    (100, 100, 14.0, 12.0, "fp32", "not 1.25x faster"),
])
def test_auto_rules_after_measuring(agreed: int, evidence: int, fp32_ms: float, int8_ms: float, chosen: str,
                                    why: str) -> None:
    got, reason = precision.choose(PrecisionPolicy("auto"), parity.Agreement(evidence, agreed), evidence, fp32_ms,
                                   int8_ms)
    assert got == chosen and why in reason


@pytest.mark.parametrize(("text", "flags"), [
    ("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n", ("avx512_vnni",)),
    ("flags\t\t: fpu avx2 avx_vnni amx_bf16 amx_int8\nflags\t\t: fpu avx2 avx_vnni\n", ("avx_vnni", "amx_int8")),
    ("flags\t\t: fpu sse2 avx2 fma\n", ()),
    ("processor\t: 0\n", ()),
])
def test_cpu_int8_flags_come_from_cpuinfo(tmp_path: Path, text: str, flags: tuple[str, ...]) -> None:
    (tmp_path / "cpuinfo").write_text(text)
    assert quantisation.cpu_int8_flags(tmp_path / "cpuinfo") == flags
    assert quantisation.cpu_int8_flags(tmp_path / "missing") == ()


# ---- pieces ----------------------------------------------------------------------------------------

def test_box_agreement_counts_both_models_boxes() -> None:
    reference = _boxes([[0, 0, 100, 100], [200, 200, 300, 300], [400, 0, 450, 50]], [0.9, 0.3, 0.8], [0, 1, 0])
    same = parity.detections(reference, reference)
    assert (same.compared, same.agreed) == (6, 6)
    # The second box drops to 0.2 (under 0.25 but within the margin: still found); the third changes class.
    candidate = _boxes([[2, 2, 100, 100], [200, 200, 300, 300], [400, 0, 450, 50]], [0.9, 0.2, 0.8], [0, 1, 1])
    result = parity.detections(reference, candidate)
    assert (result.compared, result.agreed) == (5, 3)
    assert parity.detections(_boxes([], [], []), _boxes([], [], [])).share == 1.0


def test_decoding_tail_of_the_detect_head_stays_float(checkpoints: Checkpoints, onnx_models: dict[str, Model]) -> None:
    import onnx

    detector = onnx_models["detector"]
    assert isinstance(detector, OnnxModel)
    names = quantisation.decoding_nodes(onnx.load(str(detector.path)))
    assert names and all(name.startswith("/model.22/") for name in names)
    assert any("/dfl/" in name for name in names) and not any("/cv2." in name or "/cv3." in name for name in names)


def test_input_samples_keep_found_inputs_and_every_nth_call() -> None:
    samples = calibration.InputSamples(4, every=2)
    blob = np.full((1, 3, 8, 8), 0.5, np.float32)
    for index in range(20):
        samples.offer(blob, found=index % 4 == 0)
    assert samples.counts() == (4, 2)  # 10 kept: 5 with something found (newest 4 kept), 5 without (newest 2)
    taken = samples.take()
    assert len(taken) == 6 and samples.counts() == (0, 0)
    assert all(np.allclose(sample, blob, atol=1 / 255) for sample in taken)


def test_archive_images_per_model(tmp_path: Path) -> None:
    (tmp_path / "calibration" / "brand").mkdir(parents=True)
    for name in ("calibration/b.jpg", "calibration/a.png", "calibration/notes.txt", "calibration/brand/c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in calibration.archive_images(tmp_path / "det.pt", "detect")] == ["a.png", "b.jpg"]
    assert [p.name for p in calibration.archive_images(tmp_path / "brand.pt", "classify")] == ["c.jpg"]
    assert calibration.archive_images(tmp_path / "body.pt", "classify") == []  # classifiers need their crops

