"""File sources, the latest-frame slot and crops."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pydantic
import pytest

from camera_pod.streams.config import StreamConfig
from camera_pod.streams.cropping import Crop, apply_crop
from camera_pod.streams.errors import StreamConfigError
from camera_pod.streams.frames import LatestFrame
from camera_pod.streams.hub import StreamHub
from camera_pod.streams.state import StreamState
from tests.camera_pod.streams.conftest import VIDEO
from tests.camera_pod.streams.test_rtsp import wait_for
from tests.fixtures.scenes import read_frame_index


def test_every_frame_mode_delivers_the_whole_file_in_order(hub: StreamHub) -> None:
    subscription = hub.subscribe("d;c", StreamConfig(url=str(VIDEO), kind="file", every_frame=True))
    indices = []
    while (frame := subscription.next_frame(5)) is not None:
        indices.append(read_frame_index(frame.frame.image))
        time.sleep(0.001)  # a consumer slower than decoding must still get every frame
    assert indices == list(range(270))
    assert subscription.status().state is StreamState.STOPPED
    assert subscription.status().dropped_frames == 0


def test_missing_file_is_a_permanent_failure(hub: StreamHub) -> None:
    subscription = hub.subscribe("d;c", StreamConfig(url="/nonexistent/video.mp4", kind="file"))
    wait_for(lambda: subscription.status().state is StreamState.FAILED, 5)
    assert "no such file" in (subscription.status().last_error or "")


def test_latest_frame_keeps_only_the_newest_and_counts_drops() -> None:
    slot = LatestFrame()
    image = np.zeros((2, 2, 3), np.uint8)
    for _ in range(5):
        slot.put(image)
    frame = slot.wait_newer(0, 1)
    assert frame is not None and frame.sequence == 5
    assert slot.dropped == 4 and slot.delivered == 1
    assert slot.wait_newer(5, 0.05) is None  # nothing newer: times out instead of repeating a frame


def test_latest_frame_wakes_waiters_and_close_releases_them() -> None:
    slot = LatestFrame()
    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(slot.wait_newer(0, 10)))
    waiter.start()
    time.sleep(0.05)
    slot.put(np.zeros((1, 1, 3), np.uint8))
    waiter.join(2)
    assert results and results[0] is not None
    closer = threading.Thread(target=lambda: results.append(slot.wait_newer(1, 10)))
    closer.start()
    slot.close()
    closer.join(2)
    assert not closer.is_alive() and results[-1] is None


def test_an_event_loop_waits_for_frames_without_a_thread_and_close_releases_it() -> None:
    slot = LatestFrame()

    async def scenario() -> list[object]:
        threads_before = threading.active_count()
        waiting = asyncio.create_task(slot.wait_newer_async(0, 10))
        await asyncio.sleep(0.05)
        assert not waiting.done() and threading.active_count() == threads_before  # nobody parked in a thread
        threading.Thread(target=lambda: slot.put(np.zeros((1, 1, 3), np.uint8))).start()  # the reader's put
        first = await asyncio.wait_for(waiting, 2)
        timed_out = await slot.wait_newer_async(1, 0.05)  # nothing newer: None, not the same frame again
        later = asyncio.create_task(slot.wait_newer_async(1, 10))
        await asyncio.sleep(0.05)
        slot.close()
        return [first, timed_out, await asyncio.wait_for(later, 2)]

    first, timed_out, after_close = asyncio.run(scenario())
    assert first is not None and first.sequence == 1 and slot.delivered == 1  # type: ignore[attr-defined]
    assert timed_out is None and after_close is None
    assert not slot._waiters  # a timed-out or released waiter leaves nothing behind


def test_crop_is_a_view_clipped_to_the_frame() -> None:
    image = np.arange(480 * 640 * 3, dtype=np.uint32).astype(np.uint8).reshape(480, 640, 3)
    cropped = apply_crop(image, Crop(x1=600, y1=400, x2=700, y2=500))
    assert cropped.shape == (80, 40, 3)
    assert np.shares_memory(cropped, image)


def test_crop_outside_the_frame_is_a_configuration_error() -> None:
    with pytest.raises(StreamConfigError, match="outside the 640x480 frame"):
        apply_crop(np.zeros((480, 640, 3), np.uint8), Crop(x1=700, y1=0, x2=800, y2=10))


@pytest.mark.parametrize("corners", [(10, 10, 10, 20), (10, 20, 30, 5), (-1, 0, 5, 5)])
def test_empty_or_negative_crops_are_rejected(corners: tuple[int, int, int, int]) -> None:
    x1, y1, x2, y2 = corners
    with pytest.raises(pydantic.ValidationError):
        Crop(x1=x1, y1=y1, x2=x2, y2=y2)
