"""Licence plates end to end: the embedded worker (``detector run``) with gas_station_plates.mpta on the fixture
video over a real RTSP server; each visit's imageDetection, PostgreSQL row and Redis image, against cars.json.

The same camera feeds a second display with the plate-free gas_station.mpta: its visits carry no plate."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.conftest import FIXTURES, POSTGRES_DSN, REDIS_URL
from tests.support import embedded
from tests.support.embedded import VISITS, Backend, Worker
from tests.support.model_server import serve_files
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
PLATES_MPTA = FIXTURES / "gas_station_plates.mpta"
PLATES: tuple[str, ...] = tuple(
    visit["plate"] for visit in json.loads((FIXTURES / "media" / "cars.json").read_text())["visits"])
PLATED, PLAIN = "display-plates-1", "display-plates-2"
MAX_LAG_S = 1.0  # the two displays' announcements of a visit, apart: 10 frames of the video


@pytest.fixture
def archive_urls(fixture_mpta: Path) -> Iterator[dict[str, str]]:
    """Both archives over HTTP, by display: the plates one and the fixture's plate-free one."""
    assert PLATES_MPTA.is_file(), "make it: .venv/bin/python -P tests/fixtures/make_models.py --plates-archive"
    with serve_files(PLATES_MPTA, fixture_mpta) as base:
        yield {PLATED: f"{base}/{PLATES_MPTA.name}", PLAIN: f"{base}/{fixture_mpta.name}"}


@pytest.fixture
def clean_outputs() -> None:
    embedded.clean_outputs((PLATED, PLAIN))


def subscriptions(rtsp: RtspServer, archive_urls: dict[str, str]) -> list[dict[str, Any]]:
    return [{"subscriptionIdentifier": f"{display};cam-plates", "rtspUrl": rtsp.url, "modelUrl": url,
             "modelId": 50 + index, "modelName": display} for index, (display, url) in enumerate(archive_urls.items())]


def plates_of(detections: list[dict[str, Any]]) -> list[tuple[str | None, float | None]]:
    return [(m["data"]["detection"]["licensePlateText"], m["data"]["detection"].get("licensePlateConfidence"))
            for m in detections]


def arrivals(backend: Backend, display: str) -> list[float]:
    """When each imageDetection of ``display`` reached the backend (monotonic seconds)."""
    return [at for message, at in zip(backend.received, backend.arrived, strict=True)
            if message.get("type") == "imageDetection" and message["subscriptionIdentifier"].startswith(display)]


def rows(display: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(POSTGRES_DSN) as connection:
        return [tuple(row) for row in connection.execute(
            "SELECT car_brand, car_body_type, license_character FROM gas_station_1.car_frontal_info "
            "WHERE display_id = %s ORDER BY created_at", (display,)).fetchall()]


def images(client: redis.Redis, display: str) -> list[bytes]:
    return [value for key in client.scan_iter(f"inference:{display}:*") if isinstance(value := client.get(key), bytes)]


async def test_each_visit_carries_its_plate_to_the_backend_and_the_row(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], archive_urls: dict[str, str],
        connect: Any, clean_outputs: None) -> None:
    rtsp, _ = camera_servers
    backend: Backend = await connect(worker.url)
    await backend.send({"type": "setSubscriptionList", "subscriptions": subscriptions(rtsp, archive_urls)})
    await backend.until(lambda: len(backend.online()) == 2 and all(backend.online().values()), 120)
    assert len(worker.pods()) == 1 and rtsp.clients == 1, "two displays of one camera: one pod, one connection"
    started = time.monotonic()
    await backend.until(lambda: all(len(backend.detections(d)) >= len(VISITS) for d in (PLATED, PLAIN)), 240)

    plated = backend.detections(PLATED)[: len(VISITS)]
    assert embedded.vehicles(plated) == list(VISITS)
    assert [text for text, _ in plates_of(plated)] == list(PLATES), "each visit announced with its own plate"
    assert all(confidence is not None and 0.8 <= confidence <= 1 for _, confidence in plates_of(plated))
    plain = backend.detections(PLAIN)[: len(VISITS)]
    assert embedded.vehicles(plain) == list(VISITS)
    assert plates_of(plain) == [(None, None)] * len(VISITS), "an archive without a text node reads no plate"
    # Reading never holds back an announcement: each visit is announced on the frame the plain archive announces it.
    lags = [plated_at - plain_at for plated_at, plain_at in zip(
        arrivals(backend, PLATED)[: len(VISITS)], arrivals(backend, PLAIN)[: len(VISITS)], strict=True)]
    print(f"\nplates display announced {', '.join(f'{lag:+.2f}' for lag in lags)} s after the plain one")
    assert all(abs(lag) < MAX_LAG_S for lag in lags)

    # The writes go through the pods' action outbox: moments after the events.
    client = redis.Redis.from_url(REDIS_URL)
    try:
        await backend.until(lambda: len(images(client, PLATED)) >= len(VISITS), 30)
        assert all(image.startswith(b"\xff\xd8") for image in images(client, PLATED)), "JPEG Frontal crops"
    finally:
        client.close()
    await backend.until(lambda: len(rows(PLATED)) >= len(VISITS) and len(rows(PLAIN)) >= len(VISITS), 30)
    assert rows(PLATED)[: len(VISITS)] == [(*car, plate) for car, plate in zip(VISITS, PLATES, strict=True)]
    assert rows(PLAIN)[: len(VISITS)] == [(*car, None) for car in VISITS]
    print(f"{len(VISITS)} visits with plates announced and written {time.monotonic() - started:.1f} s "
          "after both displays went online")
