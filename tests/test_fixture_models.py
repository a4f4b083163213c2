"""The fixture models in tests/fixtures/gas_station.mpta are real, and the fixture video matches its truth.

The models are evaluated on freshly rendered held-out scenes (seed TEST_SEED, different from the
training seed in tests/fixtures/make_models.py). Regenerate the fixtures with
``.venv/bin/python -P tests/fixtures/make_models.py``.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

import itertools

from tests.fixtures import plate_scenes, plates
from tests.fixtures.scenes import BODY_TYPES, BRANDS, crop, iou, read_frame_index, render_scene

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MPTA = FIXTURES / "gas_station.mpta"
PLATES_MPTA = FIXTURES / "gas_station_plates.mpta"
VIDEO = FIXTURES / "media" / "cars.mp4"
VIDEO_TRUTH = FIXTURES / "media" / "cars.json"

TEST_SEED = 424242  # held-out scenes; the training data uses make_models.SEED
PLATE_SEED = 434343  # the plates drawn on the held-out scenes' cars
N_SCENES = 60
MIN_RECALL = 0.9
MIN_PRECISION = 0.9
MIN_ACCURACY = 0.9
IOU_MATCH = 0.5
PLATE_DETECTOR_FILE = "license_plate_detection_v1.pt"
PLATE_DETECTOR_SEED = 454545  # held-out fronts for the plate detector (training: make_models.SEED)
EXPECTED_MEMBERS = {"pipeline.json", "car_frontal_detection_v1.pt", "car_brand_cls_v1.pt", "car_bodytype_cls_v1.pt"}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> tuple[Path, dict]:
    """The .mpta extracted into a temporary directory, and its pipeline.json."""
    out = tmp_path_factory.mktemp("gas_station_mpta")
    with zipfile.ZipFile(MPTA) as zf:
        assert set(zf.namelist()) == EXPECTED_MEMBERS
        zf.extractall(out)
    return out, json.loads((out / "pipeline.json").read_text())


@pytest.fixture(scope="module")
def heldout() -> list:
    rng = np.random.default_rng(TEST_SEED)
    return [render_scene(rng) for _ in range(N_SCENES)]


@pytest.fixture(scope="module")
def heldout_plated(heldout) -> list:
    """The held-out scenes with a licence plate on every car's front (tests/fixtures/plates.py: random text and
    style), drawn over the rendered scene: the models were trained without plates."""
    rng = np.random.default_rng(PLATE_SEED)
    dressed = []
    for image, truths in heldout:
        image = image.copy()
        for t in truths:
            plates.draw_plate(image, t.frontal_box, plates.random_text(rng), plates.random_style(rng))
        dressed.append((image, truths))
    return dressed


SCENE_SETS = pytest.mark.parametrize("scene_set", ["heldout", "heldout_plated"])


def _yolo(path: Path):
    from ultralytics import YOLO

    return YOLO(str(path))


def _predictions(result) -> list[tuple[str, tuple[float, ...], float]]:
    """(class name, xyxy box, confidence) for every box of an Ultralytics detection result."""
    b = result.boxes
    return [(result.names[int(c)], tuple(xyxy), float(f))
            for xyxy, c, f in zip(b.xyxy.tolist(), b.cls.tolist(), b.conf.tolist(), strict=True)]


def _branch(config: dict, model_id: str) -> dict:
    (branch,) = [b for b in config["pipeline"]["branches"] if b["modelId"] == model_id]
    return branch


def test_package_layout(package):
    root, config = package
    p = config["pipeline"]
    assert p["modelId"] == "car_frontal_detection_v1" and p["modelFile"] == "car_frontal_detection_v1.pt"
    assert p["triggerClasses"] == ["Car", "Frontal"] == p["expectedClasses"]
    assert p["multiClass"] is True
    assert [b["modelId"] for b in p["branches"]] == ["car_brand_cls_v1", "car_bodytype_cls_v1"]
    assert _branch(config, "car_brand_cls_v1")["cropClass"] == "Frontal"
    assert _branch(config, "car_bodytype_cls_v1")["cropClass"] == "Car"
    assert p["parallelActions"][0]["waitForBranches"] == ["car_brand_cls_v1", "car_bodytype_cls_v1"]
    assert _yolo(root / "car_frontal_detection_v1.pt").names == {0: "Car", 1: "Frontal"}
    assert _yolo(root / "car_brand_cls_v1.pt").names == dict(enumerate(BRANDS))
    assert _yolo(root / "car_bodytype_cls_v1.pt").names == dict(enumerate(BODY_TYPES))


@SCENE_SETS
def test_detector_finds_car_and_frontal(package, scene_set, request):
    heldout = request.getfixturevalue(scene_set)
    root, config = package
    min_conf = config["pipeline"]["minConfidence"]
    det = _yolo(root / config["pipeline"]["modelFile"])
    best = {"Car": [], "Frontal": []}  # best matching confidence per ground-truth box (0 = missed)
    n_pred = {"Car": 0, "Frontal": 0}
    n_true_pred = {"Car": 0, "Frontal": 0}
    for image, truths in heldout:
        r = det.predict(image, conf=0.05, verbose=False)[0]
        preds = _predictions(r)
        gts = {"Car": [t.car_box for t in truths], "Frontal": [t.frontal_box for t in truths]}
        for cls, boxes in gts.items():
            for gt in boxes:
                best[cls].append(max([f for c, b, f in preds if c == cls and iou(gt, b) >= IOU_MATCH], default=0.0))
            for c, b, f in preds:
                if c == cls and f >= min_conf:
                    n_pred[cls] += 1
                    n_true_pred[cls] += any(iou(gt, b) >= IOU_MATCH for gt in boxes)
    for cls, confs in best.items():
        a = np.array(confs)
        recall = float(np.mean(a >= min_conf))
        precision = n_true_pred[cls] / max(1, n_pred[cls])
        branch_conf = min(b["minConfidence"] for b in config["pipeline"]["branches"] if cls in b["triggerClasses"])
        branch_recall = float(np.mean(a >= branch_conf))
        print(f"{cls} ({scene_set}): {len(a)} boxes, recall@{min_conf}={recall:.3f} "
              f"recall@branch {branch_conf}={branch_recall:.3f} precision@{min_conf}={precision:.3f} "
              f"matched conf min={a.min():.3f} p5={np.percentile(a, 5):.3f} median={np.median(a):.3f}")
        assert len(a) >= N_SCENES
        assert recall >= MIN_RECALL, f"{cls} recall {recall:.3f} < {MIN_RECALL}"
        assert branch_recall >= MIN_RECALL, f"{cls} branch trigger recall {branch_recall:.3f} < {MIN_RECALL}"
        assert precision >= MIN_PRECISION, f"{cls} precision {precision:.3f} < {MIN_PRECISION}"


@pytest.mark.parametrize(("model_id", "attr", "classes"), [
    ("car_brand_cls_v1", "brand", BRANDS),
    ("car_bodytype_cls_v1", "body_type", BODY_TYPES),
])
@SCENE_SETS
def test_classifier_accuracy(package, scene_set, request, model_id, attr, classes):
    heldout = request.getfixturevalue(scene_set)
    root, config = package
    branch = _branch(config, model_id)
    w, h = branch["resizeTarget"]
    model = _yolo(root / branch["modelFile"])
    assert list(model.names.values()) == list(classes)
    crops, labels = [], []
    for image, truths in heldout:
        for t in truths:
            box = t.frontal_box if branch["cropClass"] == "Frontal" else t.car_box
            crops.append(cv2.resize(crop(image, box), (w, h), interpolation=cv2.INTER_AREA))
            labels.append(getattr(t, attr))
    results = model.predict(crops, verbose=False)
    predicted = [model.names[int(r.probs.top1)] for r in results]
    top1 = np.array([float(r.probs.top1conf) for r in results])
    acc = float(np.mean([p == y for p, y in zip(predicted, labels, strict=True)]))
    per_class = {c: round(float(np.mean([p == y for p, y in zip(predicted, labels, strict=True) if y == c])), 3)
                 for c in classes}
    print(f"{model_id} ({scene_set}): {len(labels)} crops, top-1 accuracy {acc:.3f}, per class {per_class}, "
          f"top-1 conf median {np.median(top1):.3f} p5 {np.percentile(top1, 5):.3f}")
    assert set(labels) == set(classes), "held-out set should cover every class"
    assert acc >= MIN_ACCURACY, f"{model_id} accuracy {acc:.3f} < {MIN_ACCURACY}"


def test_video_matches_truth():
    import av

    truth = json.loads(VIDEO_TRUTH.read_text())
    with av.open(str(VIDEO)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (truth["width"], truth["height"]) == (640, 480)
        assert stream.average_rate == truth["fps"] == 10
        indices = [read_frame_index(f.to_ndarray(format="bgr24")) for f in container.decode(stream)]
    assert len(indices) == truth["frame_count"]
    assert indices == list(range(truth["frame_count"]))
    visits = truth["visits"]
    assert len(visits) >= 3
    assert len({(v["brand"], v["body_type"]) for v in visits}) == len(visits)
    for prev, nxt in itertools.pairwise(visits):
        assert nxt["first_frame"] > prev["last_frame"] + 1, "empty frames between visits"
    car_frames = {f["frame"] for f in truth["car_frames"]}
    assert car_frames == {i for v in visits for i in range(v["first_frame"], v["last_frame"] + 1)}
    assert [v["plate"] for v in visits] == [plates.plate_value(v["plate_printed"]) for v in visits]
    assert len({v["plate"] for v in visits}) == len(visits), "every car its own plate"


def test_plates_archive_is_the_fixture_archive_with_a_plate_branch():
    """gas_station_plates.mpta: the same model files, byte for byte, and the same pipeline plus a plate detector on
    Frontal with a plate_ocr text node on its LicensePlate, whose read the PostgreSQL row stores in
    license_character (without waiting for it: a car without a plate still gets its row)."""
    with zipfile.ZipFile(MPTA) as plain, zipfile.ZipFile(PLATES_MPTA) as plated:
        assert set(plated.namelist()) == EXPECTED_MEMBERS | {PLATE_DETECTOR_FILE}
        assert all(plated.read(name) == plain.read(name) for name in EXPECTED_MEMBERS - {"pipeline.json"})
        config, base = (json.loads(archive.read("pipeline.json")) for archive in (plated, plain))
    p = config["pipeline"]
    (plate_detector,) = [b for b in p["branches"] if b["modelId"] == "license_plate_detection_v1"]
    assert (plate_detector["modelFile"], plate_detector["cropClass"]) == (PLATE_DETECTOR_FILE, "Frontal")
    (text_node,) = plate_detector["branches"]
    assert (text_node["type"], text_node["modelId"], text_node["cropClass"], text_node["resultField"]) == (
        "ocr", "plate_ocr", "LicensePlate", "license_plate")
    action = p["parallelActions"][0]
    assert action["fields"].pop("license_character") == "{plate_ocr.text}"
    assert "plate_ocr" not in action["waitForBranches"]
    p["branches"].remove(plate_detector)
    assert config == base


@pytest.fixture(scope="module")
def plate_detector(tmp_path_factory):
    out = tmp_path_factory.mktemp("plates_mpta")
    with zipfile.ZipFile(PLATES_MPTA) as archive:
        archive.extract(PLATE_DETECTOR_FILE, out)
    return _yolo(out / PLATE_DETECTOR_FILE)


def test_plate_detector_finds_plates_and_nothing_on_fronts_without_one(plate_detector):
    """Held-out Frontal crops (another seed than training's): every plate found (recall at the branch's confidence,
    blank plates included: a plate all the same), and no plate on a front without one."""
    fronts = [plate_scenes.front_crop(np.random.default_rng([PLATE_DETECTOR_SEED, index])) for index in range(300)]
    assert plate_detector.names == {0: "LicensePlate"}
    found, strays, plated, bare = 0, 0, 0, 0
    for front in fronts:
        predictions = [(box, conf) for _cls, box, conf in
                       _predictions(plate_detector.predict(front.image, conf=0.5, imgsz=128, verbose=False)[0])]
        if front.plate is None:
            bare += 1
            strays += bool(predictions)
        else:
            plated += 1
            found += any(iou(front.plate, box) >= IOU_MATCH for box, _conf in predictions)
    print(f"plate detector: {plated} plates, recall@0.5 {found / plated:.3f}; {bare} fronts without a plate, "
          f"{strays} with a stray plate")
    assert plated >= 150 and bare >= 50
    assert found / plated >= 0.95
    assert strays / bare <= 0.02


def test_models_on_video_stops(package):
    """Detector + classifiers, chained like the pipeline, on the decoded video frames where a car is stopped."""
    import av

    root, config = package
    p = config["pipeline"]
    det = _yolo(root / p["modelFile"])
    branches = {b["cropClass"]: (b, _yolo(root / b["modelFile"])) for b in p["branches"]}
    truth = json.loads(VIDEO_TRUTH.read_text())
    frames = {f["frame"]: f for f in truth["car_frames"]}
    stats = {"stopped": 0, "Car": 0, "Frontal": 0, "brand": 0, "body_type": 0, "empty": 0, "false_dets": 0}
    with av.open(str(VIDEO)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            gt = frames.get(i)
            if gt is not None and not gt["stopped"]:
                continue
            image = frame.to_ndarray(format="bgr24")
            r = det.predict(image, conf=p["minConfidence"], verbose=False)[0]
            preds = _predictions(r)
            if gt is None:
                stats["empty"] += 1
                stats["false_dets"] += len(preds)
                continue
            stats["stopped"] += 1
            visit = truth["visits"][gt["visit"]]
            for cls, attr, gt_box in (("Car", "body_type", gt["car_box"]), ("Frontal", "brand", gt["frontal_box"])):
                found = [(b, f) for c, b, f in preds if c == cls]
                if not found:
                    continue
                box, conf = max(found, key=lambda bf: bf[1])
                stats[cls] += iou(gt_box, box) >= IOU_MATCH
                branch, model = branches[cls]
                if conf >= branch["minConfidence"]:
                    w, h = branch["resizeTarget"]
                    res = model.predict(cv2.resize(crop(image, box), (w, h), interpolation=cv2.INTER_AREA),
                                        verbose=False)[0]
                    stats[attr] += model.names[int(res.probs.top1)] == visit[attr]
    print(f"video: {stats}")
    n = stats["stopped"]
    assert n >= 3 * 20
    for key in ("Car", "Frontal", "brand", "body_type"):
        assert stats[key] / n >= MIN_RECALL, f"{key}: {stats[key]}/{n} stopped frames"
    assert stats["false_dets"] <= 0.02 * stats["empty"], f"{stats['false_dets']} detections on empty frames"
