"""The embedded worker (``detector run``) as a user runs it, a backend WebSocket client, and the servers it reads.

Plain helpers; the test files wrap them in fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import websockets

from tests.conftest import FIXTURES, POSTGRES_DSN, REDIS_URL
from tests.support import snapshot_server
from tests.support.model_server import serve_files
from tests.support.redis_keys import delete_keys
from tests.support.servers import RtspServer, free_port
from tests.support.snapshot_server import SnapshotCamera

VIDEO = FIXTURES / "media" / "cars.mp4"
VISITS: tuple[tuple[str, str], ...] = tuple(
    (v["brand"], v["body_type"]) for v in json.loads((FIXTURES / "media" / "cars.json").read_text())["visits"])
# Set in the worker's environment, inherited by its camera pods: how orphans() knows this worker's pods.
MARKER_ENV = "DETECTOR_TEST_WORKER"


class Worker:
    """``detector run`` as a child process; ``kill()`` + ``restart()`` bring it back on the same port and cache."""

    def __init__(self, tmp: Path, token: str | None = None, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.cache_dir = tmp / "cache"
        self.marker = uuid.uuid4().hex
        self.log = tmp / "worker.log"
        self.args = tuple(args)
        self._environment = {**os.environ, "DETECTOR_CACHE_DIR": str(self.cache_dir), "YOLO_OFFLINE": "1",
                             MARKER_ENV: self.marker}
        self._environment.pop("DETECTOR_AUTH_TOKEN", None)
        if token:
            self._environment["DETECTOR_AUTH_TOKEN"] = token
        self.log.write_text("")
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "a") as log:
            return subprocess.Popen([sys.executable, "-P", "-m", "detector.cli", "run", "--host", "127.0.0.1",
                                     "--port", str(self.port), "--heartbeat-interval-sec", "1", *self.args],
                                    env=self._environment, stdout=subprocess.DEVNULL, stderr=log)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def pods(self) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.process.pid).children() if _is_pod(p)]
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("worker did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> list[psutil.Process]:
        """SIGTERM, as a user's Ctrl-C or a container stop; returns the pods it had."""
        pods = self.pods()
        self.process.terminate()
        self.process.wait(30)
        return pods

    def kill(self) -> list[psutil.Process]:
        """SIGKILL the broker alone (its pods get no signal); returns the pods it had."""
        pods = self.pods()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return pods

    def restart(self) -> None:
        """A new broker on the same port and cache directory (after ``stop()`` or ``kill()``)."""
        assert self.process.poll() is not None, "stop or kill the running broker first"
        self.process = self._spawn()
        self.wait_ready()

    def orphans(self) -> list[psutil.Process]:
        """This worker's camera pods (by the environment marker) that are not children of the running broker."""
        broker = self.process.pid if self.process.poll() is None else None
        found = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                if process.status() == psutil.STATUS_ZOMBIE or not _is_pod(process):
                    continue
                if process.environ().get(MARKER_ENV) == self.marker and process.ppid() != broker:
                    found.append(process)
        return found


def _is_pod(process: psutil.Process) -> bool:
    try:
        return "camera_pod" in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        time.sleep(0.1)


class Backend:
    """The backend's side of the WebSocket: everything received, with arrival times."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket
        self.received: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each message in ``received``
        self.closed_by: websockets.ConnectionClosed | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                self.received.append(json.loads(raw))
                self.arrived.append(time.monotonic())
        except websockets.ConnectionClosed as closed:
            self.closed_by = closed

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    def of_type(self, kind: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for m, at in zip(self.received, self.arrived, strict=True) if m.get("type") == kind and at >= since]

    def detections(self, prefix: str, since: float = 0.0) -> list[dict[str, Any]]:
        """imageDetection messages whose subscriptionIdentifier starts with ``prefix``."""
        return [m for m in self.of_type("imageDetection", since) if m["subscriptionIdentifier"].startswith(prefix)]

    async def until(self, predicate: Callable[[], Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last messages: {self.received[-3:]}")
            await asyncio.sleep(0.1)

    def online(self) -> dict[str, bool]:
        reports = self.of_type("stateReport")
        return {c["subscriptionIdentifier"]: c["online"] for c in reports[-1]["cameraConnections"]} if reports else {}


def vehicles(detections: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["data"]["detection"]["carBrand"], m["data"]["detection"]["bodyType"]) for m in detections]


@contextlib.asynccontextmanager
async def backends(kind: Callable[[websockets.ClientConnection], Backend] = Backend,
                   ) -> AsyncIterator[Callable[..., Awaitable[Backend]]]:
    """Yields ``open(url, token=None) -> Backend`` (made by ``kind``); every socket opened is closed on exit."""
    opened: list[websockets.ClientConnection] = []

    async def open_backend(url: str, token: str | None = None) -> Backend:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        socket = await websockets.connect(url, max_size=16 << 20, additional_headers=headers)
        opened.append(socket)
        return kind(socket)

    try:
        yield open_backend
    finally:
        for socket in opened:
            await socket.close()


@contextlib.contextmanager
def model_server(mpta: Path, tmp: Path) -> Iterator[str]:
    """The archive over HTTP (and ``broken.mpta`` beside it): workers take no local model paths."""
    broken = tmp / "broken.mpta"
    broken.write_bytes(b"this is not a zip")
    with serve_files(mpta, broken) as base:
        yield f"{base}/{mpta.name}"


@contextlib.contextmanager
def camera_servers(video: Path = VIDEO) -> Iterator[tuple[RtspServer, SnapshotCamera]]:
    """A real RTSP server streaming ``video`` and a real HTTP snapshot camera (``/video`` serves its frames)."""
    rtsp = RtspServer(video).start()
    snapshots = SnapshotCamera(video=video)
    http_server = snapshot_server.start(snapshots)
    try:
        yield rtsp, snapshots
    finally:
        rtsp.stop()
        http_server.shutdown()
        http_server.server_close()


def clean_outputs(displays: Iterable[str]) -> None:
    """Delete what earlier runs of these displays wrote to Redis and PostgreSQL."""
    displays = list(displays)
    for display in displays:
        delete_keys(REDIS_URL, f"inference:{display}:*")
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        row = connection.execute("SELECT to_regclass('gas_station_1.car_frontal_info')").fetchone()
        if row is not None and row[0] is not None:
            connection.execute("DELETE FROM gas_station_1.car_frontal_info WHERE display_id = ANY(%s)", (displays,))


def stored_vehicles(display: str) -> list[tuple[str, str]]:
    """(brand, body type) of the rows the fixture pipeline wrote to PostgreSQL for ``display``, oldest first."""
    with psycopg.connect(POSTGRES_DSN) as connection:
        return [(row[0], row[1]) for row in connection.execute(
            "SELECT car_brand, car_body_type FROM gas_station_1.car_frontal_info WHERE display_id = %s "
            "ORDER BY created_at", (display,)).fetchall()]
