"""A decoded frame and the latest-frame slot that live readers hand frames over through."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass
from typing import cast

import av

from camera_pod.inference.models import Image


@dataclass(frozen=True)
class Frame:
    image: Image  # BGR, HxWx3 uint8
    captured_at: float  # wall clock (time.time()) when the frame was read
    sequence: int  # 1, 2, 3, ... per reader; never reused, survives reconnects


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

    def put(self, image: Image, captured_at: float | None = None, *, wait_taken: bool = False) -> Frame:
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
