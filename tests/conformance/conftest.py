"""Fixtures of the conformance suite: a running ``detector run`` shared by a module, real cameras with
credentials, the fixture model over HTTP, and a backend whose every received message is schema-checked.

Built on tests/support/embedded.py (Worker, Backend, servers); nothing of it is copied.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import websockets

from tests.conformance.validation import ValidatingBackend
from tests.support import embedded, snapshot_server
from tests.support.credentialed_rtsp import CredentialedRtspServer
from tests.support.embedded import VIDEO, Worker
from tests.support.snapshot_server import SnapshotCamera

Connect = Callable[[str], Awaitable[ValidatingBackend]]


@pytest.fixture(scope="module")
def shared_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One ``detector run`` for the whole module (each test starts by sending the list it needs)."""
    running = Worker(tmp_path_factory.mktemp("worker"))
    running.wait_ready()
    yield running
    if running.process.poll() is None:
        running.stop()
    assert running.orphans() == [], "camera pods outlived the worker"


@pytest.fixture(scope="module")
def rtsp_camera() -> Iterator[CredentialedRtspServer]:
    """The fixture video over RTSP, behind a user and password (its ``url`` carries them)."""
    server = CredentialedRtspServer(VIDEO).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def snapshot_camera() -> Iterator[SnapshotCamera]:
    """A real HTTP snapshot camera: ``/basic`` and ``/digest`` need snapshot_server.USER/PASSWORD, ``/video``
    plays the fixture video (one frame per request)."""
    camera = SnapshotCamera(video=VIDEO)
    server = snapshot_server.start(camera)
    yield camera
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def shared_model_url(fixture_mpta: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded.model_server(fixture_mpta, tmp_path_factory.mktemp("models")) as url:
        yield url


@pytest.fixture
async def validated_connect() -> AsyncIterator[Connect]:
    """``open(url) -> ValidatingBackend``: the e2e tests' backend, checking every worker message against
    schemas/ as it arrives. At the end of the test every backend opened must have received only conforming
    messages."""
    opened: list[ValidatingBackend] = []

    async def open_backend(url: str) -> ValidatingBackend:
        socket = await websockets.connect(url, max_size=16 << 20)
        backend = ValidatingBackend(socket)
        opened.append(backend)
        return backend

    yield open_backend
    for backend in opened:
        await backend.socket.close()
    for backend in opened:
        backend.assert_conforms()


class LogWatch:
    """The worker's log (its stderr and its camera pods') from a mark on."""

    LEVEL = re.compile(r"^\S+ \S+ (ERROR|CRITICAL)\b|\"level\": \"(error|critical)\"")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = len(self.path.read_bytes())

    def since(self) -> str:
        return self.path.read_bytes()[self.offset:].decode(errors="replace")

    def errors(self) -> list[str]:
        return [line for line in self.since().splitlines() if self.LEVEL.search(line)
                or "invalid backend message" in line or "refused" in line.lower()]


@pytest.fixture
def worker_log(shared_worker: Worker) -> LogWatch:
    watch = LogWatch(shared_worker.log)
    watch.mark()
    return watch
