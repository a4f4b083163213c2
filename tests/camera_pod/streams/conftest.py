from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from camera_pod.streams.hub import StreamHub
from tests.conftest import FIXTURES
from tests.support.servers import RtspServer

VIDEO = FIXTURES / "media" / "cars.mp4"


@pytest.fixture
def hub() -> Iterator[StreamHub]:
    hub = StreamHub()
    yield hub
    hub.close()


@pytest.fixture
def rtsp_server() -> Iterator[RtspServer]:
    server = RtspServer(VIDEO).start()
    yield server
    server.stop()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_threads() -> int:
    return threading.active_count()


__all__ = ["VIDEO", "Path", "live_threads", "open_fds"]
