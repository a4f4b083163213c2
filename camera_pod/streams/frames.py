"""A decoded frame and the latest-frame slot that live readers hand frames over through."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import av
import numpy as np

from camera_pod.inference.models import Image
from camera_pod.pictures import Grey, grey_of

# Pixel formats whose first plane is 8-bit luma (the grey levels); full range for the JPEG ("j") ones and grey.
_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21",
                         "gray"})
_FULL_RANGE = frozenset({"yuvj420p", "yuvj422p", "yuvj444p", "gray"})

Source = av.VideoFrame | Image  # a decoded video frame, or a BGR image (a snapshot, a still)


@dataclass(frozen=True)
class Frame:
    source: Source  # as read: a video frame is converted to BGR only when something asks for ``image``
    captured_at: float  # wall clock (time.time()) when the frame was read
    sequence: int  # 1, 2, 3, ... per reader; never reused, survives reconnects

    @cached_property
    def image(self) -> Image:
        """BGR, HxWx3 uint8 (converted once, on first use)."""
        return to_bgr(self.source) if isinstance(self.source, av.VideoFrame) else self.source

    @cached_property
    def grey(self) -> Grey:
        """Grey levels: a video frame's luma plane as it is (no conversion), else the BGR image's."""
        source = self.source
        if isinstance(source, av.VideoFrame) and source.format.name in _LUMA_FIRST:
            plane = source.planes[0]
            rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
            return Grey(rows[:, :plane.width], limited_range=source.format.name not in _FULL_RANGE)
        return grey_of(self.image)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LatestFrame:
    """Holds only the newest frame: a slow consumer skips frames (counted), memory never grows.

    Threads wait with ``wait_newer``; an event loop waits with ``wait_newer_async``, woken straight from the
    reader's ``put`` (one wake-up per frame, no worker thread parked on the condition for it).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: Frame | None = None
        self._sequence = 0
        self._closed = False
        self.delivered = 0  # frames handed over to at least one consumer
        self.dropped = 0  # frames replaced before any consumer took them
        self._taken = True
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def put(self, image: Source, captured_at: float | None = None, *, wait_taken: bool = False) -> Frame:
        """Publish a frame. ``wait_taken`` (in-order file reading) first waits until the previous one was taken."""
        with self._condition:
            while wait_taken and not self._taken and not self._closed:
                self._condition.wait(0.5)
            if not self._taken:
                self.dropped += 1
            self._sequence += 1
            self._frame = Frame(image, time.time() if captured_at is None else captured_at, self._sequence)
            self._taken = False
            self._condition.notify_all()
            self._wake_waiters()
            return self._frame

    def latest(self) -> Frame | None:
        with self._condition:
            return self._frame

    def wait_newer(self, after: int, timeout: float) -> Frame | None:
        """The newest frame with ``sequence > after``, waiting up to ``timeout`` s; None on timeout/close."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while not self._closed and not self._has_newer(after):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._condition.wait(remaining)
            return self._take(after)

    async def wait_newer_async(self, after: int, timeout: float) -> Frame | None:
        """``wait_newer`` for an event loop: it waits without a thread."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        with self._condition:
            if self._closed or self._has_newer(after):
                return self._take(after)
            self._waiters.append((loop, waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            pass
        finally:
            with self._condition, contextlib.suppress(ValueError):
                self._waiters.remove((loop, waiter))
        with self._condition:
            return self._take(after)

    def _has_newer(self, after: int) -> bool:
        return self._frame is not None and self._frame.sequence > after

    def _take(self, after: int) -> Frame | None:
        """Under the lock: the newest frame if newer than ``after`` (counted as delivered), else None."""
        if not self._has_newer(after):
            return None
        if not self._taken:
            self._taken = True
            self.delivered += 1
            self._condition.notify_all()
        return self._frame

    def _wake_waiters(self) -> None:
        """Under the lock: wake every waiting event loop (a loop already closed has no one left to wake)."""
        for loop, waiter in self._waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, waiter)
        self._waiters.clear()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            self._wake_waiters()


def to_bgr(frame: av.VideoFrame) -> Image:
    return cast(Image, frame.to_ndarray(format="bgr24"))
