"""Pytest fixtures around tests.support.embedded: the worker, its model over HTTP, real cameras, backends.

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.validation import ValidatingBackend
from tests.support import embedded
from tests.support.embedded import Backend, Worker
from tests.support.servers import RtspServer
from tests.support.snapshot_server import SnapshotCamera

Connect = Callable[..., Awaitable[Backend]]


@contextlib.contextmanager
def ready_worker(tmp_path: Path, token: str | None = None) -> Iterator[Worker]:
    """``detector run`` started and ready; stopped afterwards (unless the test did), leaving no camera pod."""
    running = Worker(tmp_path, token=token)
    try:
        running.wait_ready()
    except BaseException:  # a worker that never got ready is stopped, not left running after the test
        if running.process.poll() is None:
            running.stop()
        raise
    yield running
    if running.process.poll() is None:
        running.stop()
    assert running.orphans() == [], "camera pods outlived the worker"


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    with ready_worker(tmp_path) as running:
        yield running


@pytest.fixture
def model_url(fixture_mpta: Path, tmp_path: Path) -> Iterator[str]:
    with embedded.model_server(fixture_mpta, tmp_path) as url:
        yield url


@pytest.fixture
def camera_servers() -> Iterator[tuple[RtspServer, SnapshotCamera]]:
    with embedded.camera_servers() as servers:
        yield servers


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Backends that check every message the worker sends against the original's JSON Schemas
    (tests/conformance/schemas): a test fails at its end if one did not conform."""
    opened: list[ValidatingBackend] = []

    def checking(socket: Any) -> ValidatingBackend:
        backend = ValidatingBackend(socket, check_sent=False)  # tests send odd messages on purpose
        opened.append(backend)
        return backend

    async with embedded.backends(checking) as open_backend:
        yield open_backend
    for backend in opened:
        backend.assert_conforms()
