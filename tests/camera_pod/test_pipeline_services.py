"""The pipeline on generated frames with the trained fixture models, writing to the real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psycopg
import pytest
import redis
import redis.asyncio

from camera_pod.actions.services import ServiceSink
from camera_pod.inference.ultralytics_backend import UltralyticsModel
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import FrameResult
from tests.conftest import REDIS_URL, ArchiveBuilder
from tests.fixtures import scenes

SCENE_SEED = 20261125
CHANNEL = "car_detections"


def one_car_scene(seed: int) -> tuple[np.ndarray, scenes.CarTruth]:
    image, truths = scenes.render_scene(np.random.default_rng(seed), cars=1)
    return image, truths[0]


async def _run(archive: LoadedArchive, image: np.ndarray, display_id: str) -> FrameResult:
    sink = ServiceSink(archive.config)
    engine = PipelineEngine(archive, sink)
    try:
        return await engine.process(image, FrameContext(camera_id=f"{display_id};cam-1", display_id=display_id))
    finally:
        engine.close()
        await sink.close()


@pytest.fixture
async def load(tmp_path: Path) -> Callable[[Path], Any]:
    store = ArchiveStore(tmp_path / "cache")
    return store.load


@pytest.fixture
async def messages() -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def pump() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await queue.put(message)

    task = asyncio.create_task(pump())
    yield queue
    task.cancel()
    await pubsub.aclose()
    await client.aclose()


async def _message_about(messages: asyncio.Queue[dict[str, Any]], text: str, timeout: float) -> dict[str, Any]:
    """The first message on the channel that mentions ``text``: other workers (a soak, a dev's worker) may
    publish on the same channel of the shared Redis."""
    async def first() -> dict[str, Any]:
        while text not in (message := await messages.get())["data"].decode():
            pass
        return message

    return await asyncio.wait_for(first(), timeout)


def _rows(pg: psycopg.Connection[Any], display_id: str) -> list[tuple[Any, ...]]:
    with pg.cursor() as cursor:
        cursor.execute("SELECT session_id, car_brand, car_body_type, license_type, created_at IS NOT NULL "
                       "FROM gas_station_1.car_frontal_info WHERE display_id = %s", (display_id,))
        return cursor.fetchall()


@pytest.mark.parametrize("seed", [SCENE_SEED, SCENE_SEED + 1, SCENE_SEED + 2])
async def test_car_frame_saves_crop_publishes_and_upserts(seed: int, fixture_mpta: Path, load: Any,
                                                          messages: asyncio.Queue[dict[str, Any]],
                                                          redis_client: redis.Redis,
                                                          pg: psycopg.Connection[Any]) -> None:
    archive = await load(str(fixture_mpta))
    image, truth = one_car_scene(seed)
    display_id = f"test-{uuid.uuid4().hex[:8]}"

    result = await _run(archive, image, display_id)

    assert result.status == "detected", result
    assert result.failed_actions == []
    assert result.session_id
    assert result.classified_fields() == {"brand": truth.brand, "body_type": truth.body_type}
    # Redis: the Frontal crop under the templated key, with the TTL from pipeline.json.
    keys = redis_client.keys(f"inference:{display_id}:*")
    assert len(keys) == 1
    key = keys[0].decode()
    _, _, timestamp, session, filename = key.split(":")
    assert session == result.session_id and filename.endswith(".jpg") and len(timestamp) == 19
    assert 590 <= redis_client.ttl(key) <= 600
    saved = cv2.imdecode(np.frombuffer(redis_client.get(key), np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = result.root.regions["Frontal"].xyxy  # type: ignore[union-attr]
    assert saved.shape == (y2 - y1, x2 - x1, 3)
    assert scenes.iou(result.root.regions["Frontal"].xyxy, truth.frontal_box) > 0.5  # type: ignore[union-attr]
    # The published message: valid JSON, placeholders filled.
    message = await _message_about(messages, result.session_id, 5)
    assert json.loads(message["data"]) == {"event": "frontal_detected", "session": result.session_id, "image": key}
    # PostgreSQL: the row created on Car+Frontal, completed with the classifier results of the ground truth.
    rows = _rows(pg, display_id)
    assert rows == [(result.session_id, truth.brand, truth.body_type, "No model available", True)]


async def test_waited_for_branch_that_cannot_trigger_writes_nothing(
        build_archive: ArchiveBuilder, load: Any, messages: asyncio.Queue[dict[str, Any]],
        redis_client: redis.Redis, pg: psycopg.Connection[Any]) -> None:
    def brand_needs_certainty(document: dict[str, Any]) -> None:
        document["pipeline"]["branches"][0]["minConfidence"] = 1.0

    archive = await load(str(build_archive(brand_needs_certainty)))
    image, _ = one_car_scene(SCENE_SEED)
    display_id = f"test-{uuid.uuid4().hex[:8]}"

    result = await _run(archive, image, display_id)

    assert result.status == "incomplete"
    assert "car_brand_cls_v1" in (result.reason or "")
    assert result.actions == ()
    assert redis_client.keys(f"inference:{display_id}:*") == []
    assert _rows(pg, display_id) == []
    with pytest.raises(TimeoutError):
        await _message_about(messages, display_id, 0.5)


async def test_empty_forecourt_yields_nothing(fixture_mpta: Path, load: Any, redis_client: redis.Redis,
                                              pg: psycopg.Connection[Any]) -> None:
    archive = await load(str(fixture_mpta))
    image = scenes.render_background(np.random.default_rng(SCENE_SEED))
    display_id = f"test-{uuid.uuid4().hex[:8]}"
    result = await _run(archive, image, display_id)
    assert result.status == "nothing"
    assert result.actions == ()
    assert redis_client.keys(f"inference:{display_id}:*") == []
    assert _rows(pg, display_id) == []


async def _run_with_service_down(build_archive: ArchiveBuilder, load: Any,
                                 section: str) -> tuple[FrameResult, scenes.CarTruth, str]:
    def point_at_closed_port(document: dict[str, Any]) -> None:
        document[section]["port"] = 9  # discard port: nothing listens

    archive = await load(str(build_archive(point_at_closed_port)))
    image, truth = one_car_scene(SCENE_SEED)
    display_id = f"test-{uuid.uuid4().hex[:8]}"
    return await _run(archive, image, display_id), truth, display_id


async def test_redis_down_fails_only_the_redis_actions(build_archive: ArchiveBuilder, load: Any,
                                                       pg: psycopg.Connection[Any]) -> None:
    result, truth, display_id = await _run_with_service_down(build_archive, load, "redis")
    failed = {(o.list_name, o.action_type) for o in result.failed_actions}
    assert failed == {("actions", "redis_save_image"), ("actions", "redis_publish")}
    assert "ConnectionError" in result.failed_actions[0].detail
    assert _rows(pg, display_id) == [(result.session_id, truth.brand, truth.body_type, "No model available", True)]


async def test_postgres_down_fails_only_the_database_writes(build_archive: ArchiveBuilder, load: Any,
                                                            redis_client: redis.Redis) -> None:
    result, _, display_id = await _run_with_service_down(build_archive, load, "postgresql")
    failed = {(o.list_name, o.action_type) for o in result.failed_actions}
    assert failed == {("initial_record", "postgresql_insert"), ("parallelActions", "postgresql_update_combined")}
    assert len(redis_client.keys(f"inference:{display_id}:*")) == 1


async def test_custom_table_upsert_with_schema_prefix_and_now(build_archive: ArchiveBuilder, load: Any,
                                                              pg: psycopg.Connection[Any]) -> None:
    pg.execute("CREATE SCHEMA IF NOT EXISTS pipeline_test")
    pg.execute("CREATE TABLE IF NOT EXISTS pipeline_test.visits (visit_key TEXT PRIMARY KEY, brand TEXT, "
               "body TEXT, seen_at TIMESTAMPTZ, camera TEXT)")

    def custom_table(document: dict[str, Any]) -> None:
        action = document["pipeline"]["parallelActions"][0]
        action.update({"table": "pipeline_test.visits", "key_field": "visit_key", "key_value": "v-{display_id}",
                       "fields": {"brand": "{car_brand_cls_v1.brand}", "body": "{car_bodytype_cls_v1.body_type}",
                                  "seen_at": "NOW()", "camera": "{camera_id}"}})

    archive = await load(str(build_archive(custom_table)))
    image, truth = one_car_scene(SCENE_SEED)
    display_id = f"test-{uuid.uuid4().hex[:8]}"
    for _ in range(2):  # the second run updates the same row instead of failing on the key
        result = await _run(archive, image, display_id)
        assert result.failed_actions == []
    rows = pg.execute("SELECT brand, body, seen_at IS NOT NULL, camera FROM pipeline_test.visits WHERE visit_key = %s",
                      (f"v-{display_id}",)).fetchall()
    assert rows == [(truth.brand, truth.body_type, True, f"{display_id};cam-1")]


async def test_without_a_sink_every_node_is_timed_and_actions_are_skipped(fixture_mpta: Path, load: Any) -> None:
    archive = await load(str(fixture_mpta))
    image, _ = one_car_scene(SCENE_SEED)
    engine = PipelineEngine(archive, None)
    try:
        result = await engine.process(image, FrameContext(camera_id="d;c", display_id="d"))
    finally:
        engine.close()
    assert set(result.timings_ms) == {"car_frontal_detection_v1", "car_brand_cls_v1", "car_bodytype_cls_v1", "total"}
    assert {o.status for o in result.actions} == {"skipped"}
    assert set(result.root.branches) == {"car_brand_cls_v1", "car_bodytype_cls_v1"}  # type: ignore[union-attr]


class _SlowClassifier:
    """Wraps a real model and records when each classify call ran."""

    def __init__(self, model: Any, calls: list[tuple[float, float]]) -> None:
        self._model, self._calls = model, calls
        self.task, self.names = model.task, model.names

    def detect(self, *args: Any, **kwargs: Any) -> Any:
        return self._model.detect(*args, **kwargs)

    def classify(self, image: np.ndarray) -> Any:
        started = time.monotonic()
        time.sleep(0.3)
        result = self._model.classify(image)
        self._calls.append((started, time.monotonic()))
        return result


async def test_parallel_branches_overlap_in_time(fixture_mpta: Path, tmp_path: Path) -> None:
    calls: list[tuple[float, float]] = []
    store = ArchiveStore(tmp_path / "cache", load_model=lambda path: _SlowClassifier(UltralyticsModel(path), calls))
    archive = await store.load(str(fixture_mpta))
    image, _ = one_car_scene(SCENE_SEED)
    engine = PipelineEngine(archive, None)
    try:
        await engine.process(image, FrameContext(camera_id="d;c", display_id="d"))
    finally:
        engine.close()
    assert len(calls) == 2
    (start_a, end_a), (start_b, end_b) = calls
    assert start_a < end_b and start_b < end_a, "parallel branches ran one after the other"


async def test_connections_are_made_once_per_archive_not_per_frame(fixture_mpta: Path, load: Any,
                                                                   redis_client: redis.Redis,
                                                                   pg: psycopg.Connection[Any]) -> None:
    archive = await load(str(fixture_mpta))
    name = f"test-{uuid.uuid4().hex[:8]}"
    sink = ServiceSink(archive.config, client_name=name)
    engine = PipelineEngine(archive, sink)
    try:
        for seed in range(4):
            image, _ = one_car_scene(SCENE_SEED + seed)
            result = await engine.process(image, FrameContext(camera_id=f"{name};cam", display_id=name))
            assert result.status == "detected" and result.failed_actions == []
        redis_connections = [c for c in redis_client.client_list() if c.get("name") == name]
        pg_connections = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                    (name,)).fetchone()
        assert len(redis_connections) == 1
        assert pg_connections is not None and pg_connections[0] == 1
    finally:
        engine.close()
        await sink.close()
