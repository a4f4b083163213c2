"""Process and link faults under the full stack: no imageDetection lost or duplicated, nothing left behind.

A kill -9 of a camera pod, a kill -9 of the broker (its pods exit with it) followed by a restart, and a
backend that drops its WebSocket ten times, while the looping fixture video keeps bringing cars. The
check is the video itself: ordered by capture time, the announced vehicles must follow the video's
order, each once; a vehicle may be missing only where no pod was running to see it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import datetime
from typing import Any

import psycopg
import pytest

from tests.conftest import POSTGRES_DSN
from tests.support import embedded
from tests.support.embedded import VISITS, Backend, Worker
from tests.support.embedded_fixtures import Connect
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
DISPLAY = "display-fault-3"
CAMERA = f"{DISPLAY};cam-103"
VISIT_EVERY_S = 27 / len(VISITS)  # the fixture video: 270 frames at 10 fps, four cars


@pytest.fixture(autouse=True)
def clean_outputs() -> None:
    embedded.clean_outputs([DISPLAY])


def subscription_list(rtsp: RtspServer, model_url: str) -> dict[str, Any]:
    return {"type": "setSubscriptionList", "subscriptions": [
        {"subscriptionIdentifier": CAMERA, "rtspUrl": rtsp.url, "modelUrl": model_url, "modelId": 45,
         "modelName": "gas-station"}]}


async def open_and_subscribe(worker: Worker, connect: Connect, rtsp: RtspServer, model_url: str) -> Backend:
    backend = await connect(worker.url)
    await backend.send(subscription_list(rtsp, model_url))  # a real backend sends its list on every connect
    return backend


def captured(message: dict[str, Any]) -> float:
    return datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00")).timestamp()


def in_capture_order(*backends: Backend) -> list[dict[str, Any]]:
    received = [m for backend in backends for m in backend.detections(DISPLAY)]
    stamps = [(m["subscriptionIdentifier"], m["timestamp"]) for m in received]
    duplicates = [stamp for stamp, count in _counts(stamps).items() if count > 1]
    assert not duplicates, f"imageDetection delivered more than once: {duplicates}"
    return sorted(received, key=captured)


def _counts(items: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def assert_each_car_once(detections: list[dict[str, Any]], *, gaps: tuple[tuple[float, float], ...] = ()) -> None:
    """Consecutive announcements are consecutive cars of the video, unless a pod was down (``gaps``) between."""
    for earlier, later in itertools.pairwise(detections):
        before, after = embedded.vehicles([earlier, later])
        if after == VISITS[(VISITS.index(before) + 1) % len(VISITS)]:
            continue
        down = any(captured(earlier) < end and start < captured(later) for start, end in gaps)
        assert down, (f"{before} at {earlier['timestamp']} then {after} at {later['timestamp']}: "
                      f"a car was {'announced twice' if before == after else 'lost'} while every pod ran")


def rows() -> list[tuple[str, str]]:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        if connection.execute("SELECT to_regclass('gas_station_1.car_frontal_info')").fetchone() == (None,):
            return []
        return [(brand, body) for brand, body in connection.execute(
            "SELECT car_brand, car_body_type FROM gas_station_1.car_frontal_info WHERE display_id = %s "
            "ORDER BY created_at", (DISPLAY,)).fetchall()]


async def assert_one_row_per_announcement(detections: list[dict[str, Any]]) -> None:
    """The table holds a row for each announced car, in the same order, and no other (later cars aside)."""
    deadline = time.monotonic() + 15
    while len(found := rows()) < len(detections) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert found[: len(detections)] == embedded.vehicles(detections), \
        "PostgreSQL rows and announcements differ (a duplicate or a lost row)"


async def test_a_camera_pod_killed_mid_visit_is_restarted_and_nothing_is_announced_twice(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect) -> None:
    rtsp, _ = camera_servers
    backend = await open_and_subscribe(worker, connect, rtsp, model_url)
    await backend.until(lambda: backend.detections(DISPLAY), 90)
    (pod,) = worker.pods()
    pod.kill()  # the car just announced is still at the pump
    killed_at = time.time()
    embedded.wait_until(lambda: [p.pid for p in worker.pods()] not in ([], [pod.pid]), 15, "the pod restarted")
    await backend.until(lambda: len(backend.detections(DISPLAY)) >= 4, 120)

    detections = in_capture_order(backend)
    restarted = next(captured(m) for m in detections if captured(m) > killed_at)
    assert_each_car_once(detections, gaps=((killed_at, restarted),))
    await assert_one_row_per_announcement(detections)
    assert "pod exited; restarting" in worker.log.read_text()


async def test_a_killed_broker_loses_no_event_its_pods_made_while_the_backend_was_away(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect) -> None:
    rtsp, _ = camera_servers
    first = await open_and_subscribe(worker, connect, rtsp, model_url)
    await first.until(lambda: first.detections(DISPLAY), 90)
    await first.socket.close()
    away_from = time.time()
    await asyncio.sleep(2.5 * VISIT_EVERY_S)  # cars keep coming: their events wait in the pod's outbox
    pods = worker.kill()
    killed_at = time.time()
    embedded.wait_until(lambda: all(not p.is_running() or p.status() == "zombie" for p in pods), 10,
                        "pods exit with their broker")
    assert worker.orphans() == []
    worker.restart()
    embedded.wait_until(lambda: len(worker.pods()) == 1, 30, "the remembered camera starts before any backend")
    second = await open_and_subscribe(worker, connect, rtsp, model_url)
    await second.until(lambda: any(captured(m) > killed_at for m in second.detections(DISPLAY)), 90)

    detections = in_capture_order(first, second)
    made_while_away = [m for m in detections if away_from < captured(m) < killed_at]
    assert len(made_while_away) >= 2, "events made while the backend was away were lost with the broker"
    assert all(m in second.detections(DISPLAY) for m in made_while_away)
    restarted = next(captured(m) for m in detections if captured(m) > killed_at)
    assert_each_car_once(detections, gaps=((killed_at, restarted),))
    await assert_one_row_per_announcement(detections)


async def test_a_backend_dropping_ten_times_misses_nothing_and_gets_nothing_twice(
        worker: Worker, camera_servers: tuple[RtspServer, SnapshotCamera], model_url: str,
        connect: Connect) -> None:
    rtsp, _ = camera_servers
    chaos = random.Random(7)
    sessions = [await open_and_subscribe(worker, connect, rtsp, model_url)]
    await sessions[0].until(lambda: sessions[0].detections(DISPLAY), 90)
    for _ in range(10):
        await asyncio.sleep(chaos.uniform(0.5, 4.0))
        await sessions[-1].socket.close()
        await asyncio.sleep(chaos.uniform(0.2, 3.0))
        sessions.append(await open_and_subscribe(worker, connect, rtsp, model_url))
    last = sessions[-1]
    await last.until(lambda: len(last.detections(DISPLAY)) >= 1, 30)  # what was kept is flushed on connect

    detections = in_capture_order(*sessions)
    assert len(detections) >= 4, "too few cars to say anything"
    assert_each_car_once(detections)  # the pod never stopped: no gap is allowed
    await assert_one_row_per_announcement(detections)
    assert worker.orphans() == []
