"""The least time between two frames a display processes (the original worker's ``poll_interval_ms``).

The pacer only delays *taking* the next frame: the reader keeps decoding at its own pace (``target_fps``)
into the latest-frame slot, which replaces, and counts as dropped, the frames nobody took in between. After
the wait the newest frame is taken, so pacing never makes the processed frames older.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

T = TypeVar("T", covariant=True)


class FrameSource(Protocol[T]):
    async def next_frame_async(self, timeout: float) -> T | None: ...


@dataclass
class FramePacer:
    """``interval_s`` (0: none) at least between the moments two frames are taken for processing."""

    interval_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _last_taken: float | None = field(default=None, init=False)

    @classmethod
    def from_poll_interval(cls, poll_interval_ms: int) -> FramePacer:
        return cls(poll_interval_ms / 1000)

    def delay(self) -> float:
        """Seconds to wait before the next frame may be taken."""
        if self._last_taken is None or self.interval_s <= 0:
            return 0.0
        return max(0.0, self._last_taken + self.interval_s - self.clock())

    async def next_frame(self, source: FrameSource[T], timeout: float) -> T | None:
        """The newest frame of ``source`` once the interval since the last one taken is over; None on timeout."""
        wait = self.delay()
        if wait > 0:
            await self.sleep(wait)
        frame = await source.next_frame_async(timeout)
        if frame is not None:
            self._last_taken = self.clock()
        return frame
