"""The original worker's pipeline semantics (shared/spec/seed-original-worker.diff.txt, ``run_pipeline``).

Branch triggering is checked on hand-built detections (the pure rules in ``pipeline/triggering.py``, and
the engine with stand-in models, no writes); file names, old tables and triggering without ``multiClass``
on real runs with the fixture models against the real Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import redis
from psycopg import sql

from camera_pod.actions.services import ServiceSink
from camera_pod.inference.detections import Classification, Detections
from camera_pod.inference.models import Image
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.mpta.schema import Node, PipelineConfig
from camera_pod.pipeline import triggering
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import FrameResult
from camera_pod.pipeline.sink import ActionSink
from tests.conftest import POSTGRES_DSN, ArchiveBuilder
from tests.fixtures import scenes
from tests.support.action_sinks import real_sink

SCENE_SEED = 20261125
NAMES = ("Car", "Frontal", "Person")


def detections(*boxes: tuple[str, float, tuple[int, int, int, int]]) -> Detections:
    """A hand-built container: (class, confidence, xyxy) per box."""
    return Detections(np.array([box for _, _, box in boxes], np.float32).reshape(-1, 4),
                      np.array([conf for _, conf, _ in boxes], np.float32),
                      np.array([NAMES.index(name) for name, _, _ in boxes], np.int64), NAMES)


def branch(model_id: str, triggers: Sequence[str], min_confidence: float, **extra: Any) -> dict[str, Any]:
    return {"modelId": model_id, "modelFile": f"{model_id}.pt", "triggerClasses": list(triggers),
            "minConfidence": min_confidence, **extra}


def root(branches: list[dict[str, Any]], *, multi: bool = False, expected: Sequence[str] = (),
         wait: Sequence[str] = ()) -> dict[str, Any]:
    node: dict[str, Any] = {"modelId": "det", "modelFile": "det.pt", "triggerClasses": ["Car", "Frontal"],
                            "minConfidence": 0.5, "multiClass": multi, "expectedClasses": list(expected),
                            "branches": branches}
    if wait:
        node["parallelActions"] = [{"type": "postgresql_update_combined", "table": "t", "key_field": "k",
                                    "key_value": "{session_id}", "waitForBranches": list(wait),
                                    "fields": {"c": "{class}"}}]
    return node


# ---- the pure rules ------------------------------------------------------------------------------

def test_regions_keep_the_best_box_of_every_class_above_the_node_threshold() -> None:
    found = triggering.regions(detections(("Car", 0.6, (0, 0, 10, 10)), ("Car", 0.9, (5, 5, 50, 50)),
                                          ("Frontal", 0.55, (1, 1, 4, 4)), ("Frontal", 0.4, (2, 2, 9, 9)),
                                          ("Person", 0.3, (0, 0, 3, 3))), 0.5)
    assert {name: (box.confidence, box.xyxy) for name, box in found.items()} == {
        "Car": (pytest.approx(0.9), (5, 5, 50, 50)), "Frontal": (pytest.approx(0.55), (1, 1, 4, 4))}


def test_regions_of_the_trigger_classes_only() -> None:
    found = triggering.regions(detections(("Car", 0.6, (0, 0, 10, 10)), ("Person", 0.99, (0, 0, 3, 3))), 0.5,
                               ["Car", "Frontal"])
    assert set(found) == {"Car"}


# (regions as class -> confidence, the branch's trigger classes, its minConfidence, the class that triggers it)
TRIGGER_CASES = [
    ({"Car": 0.9, "Frontal": 0.7}, ["Frontal"], 0.5, "Frontal"),  # not the top box, still triggers
    ({"Car": 0.9, "Frontal": 0.7}, ["Car"], 0.5, "Car"),
    ({"Car": 0.9, "Frontal": 0.75}, ["Frontal"], 0.75, "Frontal"),  # ≥, not > (0.75 is exact in float32)
    ({"Car": 0.9, "Frontal": 0.75}, ["Frontal"], 0.76, None),
    ({"Car": 0.9, "Frontal": 0.4}, ["Frontal", "Car"], 0.5, "Car"),  # any trigger class
    ({"Car": 0.9}, ["Frontal"], 0.0, None),  # not detected
    ({"Car": 0.9}, [], 0.0, None),
]


@pytest.mark.parametrize(("found", "triggers", "min_confidence", "expected"), TRIGGER_CASES)
def test_a_branch_triggers_on_any_trigger_class_at_its_own_threshold(
        found: Mapping[str, float], triggers: list[str], min_confidence: float, expected: str | None) -> None:
    regions = triggering.regions(detections(*((name, conf, (0, 0, 9, 9)) for name, conf in found.items())), 0.0)
    node = Node.model_validate(branch("b", triggers, min_confidence))
    assert triggering.trigger(node, regions) == expected


@pytest.mark.parametrize(("multi", "expected", "found", "present"), [
    (True, ["Car", "Frontal"], ["Car"], True),  # at least one expected class is enough
    (True, ["Car", "Frontal"], ["Frontal"], True),
    (True, ["Frontal"], ["Car"], False),
    (True, [], ["Car"], True),  # multiClass without expectedClasses: no condition
    (False, [], ["Car"], True),
])
def test_expected_classes(multi: bool, expected: list[str], found: list[str], present: bool) -> None:
    node = Node.model_validate(root([], multi=multi, expected=expected))
    regions = triggering.regions(detections(*((name, 0.9, (0, 0, 9, 9)) for name in found)), 0.5)
    assert triggering.expected_present(node, regions) is present


@pytest.mark.parametrize(("crop_class", "triggers", "runs"), [
    ("Frontal", ["Car"], True),  # crops another class than the one that triggers it
    (None, ["Car"], True),  # no cropClass: the first trigger class
    ("Person", ["Car"], False),  # the crop class is not detected: it cannot run
])
def test_crop_class_and_plan(crop_class: str | None, triggers: list[str], runs: bool) -> None:
    node = Node.model_validate(root([branch("b", triggers, 0.5, crop=True, cropClass=crop_class)], wait=["b"]))
    regions = triggering.regions(detections(("Car", 0.9, (0, 0, 9, 9)), ("Frontal", 0.8, (1, 1, 5, 5))), 0.5)
    assert triggering.crop_class(node.branches[0]) == (crop_class or triggers[0])
    planned, skipped = triggering.plan(node, regions)
    assert [b.modelId for b in planned] == (["b"] if runs else [])
    assert triggering.missing_waited_for(node, planned) == ([] if runs else ["b"])
    assert ("b" in skipped) is not runs


# ---- the engine with stand-in models (no writes: no sink) ----------------------------------------

class _Detector:
    task = "detect"
    names = NAMES

    def __init__(self, result: Detections) -> None:
        self.result = result

    def detect(self, image: Image, **_: Any) -> Detections:
        return self.result

    def classify(self, image: Image) -> Classification:
        raise AssertionError("a detector")


class _Classifier:
    """Answers its own name; records the shape of every input (the crop it was given)."""

    task = "classify"

    def __init__(self, answer: str) -> None:
        self.names = (answer,)
        self.inputs: list[tuple[int, ...]] = []

    def detect(self, image: Image, **_: Any) -> Detections:
        raise AssertionError("a classifier")

    def classify(self, image: Image) -> Classification:
        self.inputs.append(image.shape)
        return Classification(self.names[0], 0.99)


CAR_AND_FRONTALS = detections(("Car", 0.95, (100, 100, 400, 300)), ("Frontal", 0.6, (10, 10, 20, 20)),
                              ("Frontal", 0.8, (300, 150, 390, 250)), ("Frontal", 0.3, (0, 0, 200, 200)))


def _process(document: dict[str, Any], result: Detections) -> tuple[FrameResult, dict[str, _Classifier]]:
    config = PipelineConfig.model_validate({"pipeline": document})
    classifiers = {b.modelId: _Classifier(b.modelId.upper()) for b in config.pipeline.branches}
    archive = LoadedArchive("", Path("."), config, {"det": _Detector(result), **classifiers})
    engine = PipelineEngine(archive, None)
    try:
        frame = np.zeros((480, 640, 3), np.uint8)
        return asyncio.run(engine.process(frame, FrameContext("d;c", "d"))), classifiers
    finally:
        engine.close()


@pytest.mark.parametrize("multi", [True, False])
def test_every_branch_sees_the_best_box_of_its_class_with_or_without_multiclass(multi: bool) -> None:
    document = root([branch("brand", ["Frontal"], 0.5, crop=True), branch("body", ["Car"], 0.5, crop=True),
                     branch("full", ["Car"], 0.5)], multi=multi, wait=["brand", "body"])
    result, classifiers = _process(document, CAR_AND_FRONTALS)
    assert result.status == "detected", result.reason
    assert result.root is not None and set(result.root.branches) == {"brand", "body", "full"}
    assert classifiers["brand"].inputs == [(100, 90, 3)]  # the 0.8 Frontal, not the top box or the first one
    assert classifiers["body"].inputs == [(200, 300, 3)]
    assert classifiers["full"].inputs == [(480, 640, 3)]  # no crop: the whole frame
    assert {name: box.confidence for name, box in result.root.regions.items()} == {
        "Car": pytest.approx(0.95), "Frontal": pytest.approx(0.8)}


@pytest.mark.parametrize(("document", "status", "ran"), [
    # a waited-for branch that will not trigger: the frame is refused before anything
    (root([branch("brand", ["Frontal"], 0.81), branch("body", ["Car"], 0.5)], wait=["brand", "body"]),
     "incomplete", set()),
    # the same branch not waited for: the others still run
    (root([branch("brand", ["Frontal"], 0.81), branch("body", ["Car"], 0.5)], wait=["body"]), "detected", {"body"}),
    # a waited-for branch whose crop class is not detected cannot run either
    (root([branch("brand", ["Car"], 0.5, crop=True, cropClass="Person")], wait=["brand"]), "incomplete", set()),
    # multiClass + expectedClasses and none of them detected: nothing
    (root([branch("body", ["Car"], 0.5)], multi=True, expected=["Person"]), "nothing", set()),
])
def test_prevalidation_and_expected_classes_in_the_engine(document: dict[str, Any], status: str,
                                                          ran: set[str]) -> None:
    result, classifiers = _process(document, CAR_AND_FRONTALS)
    assert result.status == status
    assert {name for name, classifier in classifiers.items() if classifier.inputs} == ran


# ---- real runs: fixture models, real Redis and PostgreSQL ----------------------------------------

@pytest.fixture
def scratch_schema(pg: psycopg.Connection[Any]) -> Iterator[str]:
    """A schema of its own on the shared database, dropped afterwards."""
    name = f"seed_test_{uuid.uuid4().hex[:10]}"
    pg.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    pg.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def scratch_database(pg: psycopg.Connection[Any]) -> Iterator[str]:
    """A database of its own on the shared server: its gas_station_1 is nobody else's."""
    name = f"seed_test_{uuid.uuid4().hex[:10]}"
    pg.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    pg.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def _run(archive: LoadedArchive, sink: ActionSink, image: np.ndarray, display_id: str) -> FrameResult:
    engine = PipelineEngine(archive, sink)
    try:
        return await engine.process(image, FrameContext(camera_id=f"{display_id};cam-1", display_id=display_id))
    finally:
        engine.close()


async def test_uuid_and_filename_name_the_same_file_in_every_action_of_a_node(
        build_archive: ArchiveBuilder, tmp_path: Path, redis_client: redis.Redis, pg: psycopg.Connection[Any],
        scratch_schema: str) -> None:
    pg.execute(sql.SQL("CREATE TABLE {} (session_key TEXT PRIMARY KEY, file TEXT, file_uuid TEXT, brand TEXT, "
                       "seen_at TIMESTAMPTZ)").format(sql.Identifier(scratch_schema, "visits")))
    channel = f"seed-test-{uuid.uuid4().hex[:8]}"

    def name_files(document: dict[str, Any]) -> None:
        node = document["pipeline"]
        node["actions"][1].update(channel=channel, message='{"file":"{filename}","uuid":"{uuid}","key":"{image_key}"}')
        node["parallelActions"][0].update(table=f"{scratch_schema}.visits", key_field="session_key", fields={
            "file": "{filename}", "file_uuid": "{uuid}", "brand": "{car_brand_cls_v1.brand}", "seen_at": "NOW()"})

    archive = await ArchiveStore(tmp_path / "cache").load(str(build_archive(name_files)))
    image, truth = scenes.render_scene(np.random.default_rng(SCENE_SEED), cars=1)
    display_id = f"test-{uuid.uuid4().hex[:8]}"
    subscriber = redis_client.pubsub()
    subscriber.subscribe(channel)
    sink = ServiceSink(archive.config)
    try:
        result = await _run(archive, sink, image, display_id)
    finally:
        await sink.close()
    assert result.status == "detected" and result.failed_actions == [], result

    keys = [key.decode() for key in redis_client.keys(f"inference:{display_id}:*")]
    assert len(keys) == 1
    saved_filename = keys[0].rsplit(":", 1)[1]
    deadline = time.monotonic() + 5
    message = None
    while message is None or message["type"] != "message":
        assert time.monotonic() < deadline, "nothing published"
        message = subscriber.get_message(timeout=0.5)
    subscriber.close()
    published = json.loads(message["data"])
    assert published["key"] == keys[0]
    assert published["file"] == saved_filename
    assert saved_filename == f"{published['uuid']}.jpg"
    assert str(uuid.UUID(published["uuid"])) == published["uuid"]
    row = pg.execute(sql.SQL("SELECT file, file_uuid, brand, seen_at IS NOT NULL FROM {} WHERE session_key = %s")
                     .format(sql.Identifier(scratch_schema, "visits")), (result.session_id,)).fetchone()
    assert row == (saved_filename, published["uuid"], truth[0].brand, True)


# The first schema of gas_station_1.car_frontal_info that the original worker created.
ORIGINAL_FIRST_TABLE = """
CREATE TABLE gas_station_1.car_frontal_info (
    display_id VARCHAR(255),
    captured_timestamp VARCHAR(255),
    session_id VARCHAR(255) PRIMARY KEY,
    license_character VARCHAR(255) DEFAULT NULL,
    license_type VARCHAR(255) DEFAULT 'No model available'
)"""


@pytest.mark.parametrize("durable", [True, False], ids=["outbox", "direct"])
async def test_an_older_workers_table_is_brought_up_to_date(durable: bool, build_archive: ArchiveBuilder,
                                                            tmp_path: Path, scratch_database: str) -> None:
    dsn = POSTGRES_DSN.replace("dbname=test", f"dbname={scratch_database}")
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE SCHEMA gas_station_1")
        db.execute(ORIGINAL_FIRST_TABLE)
        db.execute("INSERT INTO gas_station_1.car_frontal_info (display_id, captured_timestamp, session_id) "
                   "VALUES ('old-display', 'then', 'old-session')")

    def use_scratch_database(document: dict[str, Any]) -> None:
        document["postgresql"]["database"] = scratch_database

    archive = await ArchiveStore(tmp_path / "cache").load(str(build_archive(use_scratch_database)))
    image, truth = scenes.render_scene(np.random.default_rng(SCENE_SEED), cars=1)
    display_id = f"test-{uuid.uuid4().hex[:8]}"
    async with real_sink(archive.config, tmp_path, durable=durable, client_name="test-seed-semantics") as writes:
        result = await _run(archive, writes.sink, image, display_id)
        dead = await writes.drained()
    assert result.status == "detected" and result.failed_actions == [], result
    assert dead == []
    with psycopg.connect(dsn) as db:
        rows = db.execute("SELECT display_id, car_brand, car_body_type, car_model, license_type, "
                          "created_at IS NOT NULL, updated_at IS NOT NULL FROM gas_station_1.car_frontal_info "
                          "ORDER BY display_id").fetchall()
    assert rows == [("old-display", None, None, None, "No model available", True, True),
                    (display_id, truth[0].brand, truth[0].body_type, None, "No model available", True, True)]


async def test_branches_trigger_without_multiclass_on_a_real_frame(
        build_archive: ArchiveBuilder, tmp_path: Path, redis_client: redis.Redis, pg: psycopg.Connection[Any],
        scratch_schema: str) -> None:
    # Without multiClass the original still offered every class's best box to the branches: the brand
    # branch (Frontal) triggers although the Car box is the more confident one. No initial row then (the
    # original's rule), so the combined upsert is keyed by the display here. The table lacks the columns the
    # action writes: they are added (a field's text, NOW() a timestamp) before the write.
    pg.execute(sql.SQL("CREATE TABLE {} (display TEXT PRIMARY KEY)").format(sql.Identifier(scratch_schema, "cars")))

    def single_class(document: dict[str, Any]) -> None:
        node = document["pipeline"]
        node["multiClass"] = False
        node["expectedClasses"] = []
        node["parallelActions"][0].update(table=f"{scratch_schema}.cars", key_field="display",
                                          key_value="{display_id}", fields={
                                              "brand": "{car_brand_cls_v1.brand}",
                                              "body": "{car_bodytype_cls_v1.body_type}", "seen_at": "NOW()"})

    archive = await ArchiveStore(tmp_path / "cache").load(str(build_archive(single_class)))
    image, truth = scenes.render_scene(np.random.default_rng(SCENE_SEED), cars=1)
    display_id = f"test-{uuid.uuid4().hex[:8]}"
    sink = ServiceSink(archive.config)
    try:
        result = await _run(archive, sink, image, display_id)
    finally:
        await sink.close()
    assert result.status == "detected" and result.failed_actions == [], result
    assert result.root is not None and set(result.root.regions) == {"Car", "Frontal"}
    assert result.root.skipped_branches == {}
    assert result.classified_fields() == {"brand": truth[0].brand, "body_type": truth[0].body_type}
    assert len(redis_client.keys(f"inference:{display_id}:*")) == 1
    rows = pg.execute(sql.SQL("SELECT display, brand, body, seen_at IS NOT NULL FROM {}").format(
        sql.Identifier(scratch_schema, "cars"))).fetchall()
    assert rows == [(display_id, truth[0].brand, truth[0].body_type, True)]
    types = dict(pg.execute("SELECT column_name, data_type FROM information_schema.columns "
                            "WHERE table_schema = %s AND table_name = 'cars'", (scratch_schema,)).fetchall())
    assert types == {"display": "text", "brand": "text", "body": "text", "seen_at": "timestamp with time zone"}
