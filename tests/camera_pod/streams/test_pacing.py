"""``poll_interval_ms``: the least time between two frames processed for a display, on a simulated clock.

A simulated camera puts every frame it decodes into the real latest-frame slot at its own rate; the pacer
only delays taking the next one, so the frames in between are replaced there (counted as dropped) and the
frame taken after a wait is always the newest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from camera_pod import runtime
from camera_pod.displays import Display
from camera_pod.pipeline.results import FrameResult
from camera_pod.processing import DisplayProcessor, Processed
from camera_pod.runtime import CameraPod
from camera_pod.settings import PodSettings
from camera_pod.streams.frames import LatestFrame
from camera_pod.streams.hub import CroppedFrame
from camera_pod.streams.pacing import FramePacer
from detector.contract.pods import DisplaySubscription, PodSpec, StreamSpec

IMAGE = np.zeros((2, 2, 3), np.uint8)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SimulatedCamera:
    """A reader decoding ``fps`` frames a second into a ``LatestFrame``, however slowly they are taken."""

    clock: Clock
    fps: float
    slot: LatestFrame = field(default_factory=LatestFrame)
    decoded: int = 0
    _taken: int = 0

    def _decode_until(self, now: float) -> None:
        while self.decoded / self.fps <= now + 1e-9:
            self.slot.put(IMAGE, captured_at=self.decoded / self.fps)
            self.decoded += 1

    async def next_frame_async(self, timeout: float) -> CroppedFrame | None:
        self._decode_until(self.clock.now)
        if self.slot.latest() is None or self.slot.latest().sequence <= self._taken:  # type: ignore[union-attr]
            self.clock.now = self.decoded / self.fps  # wait for the next frame
            self._decode_until(self.clock.now)
        frame = self.slot.wait_newer(self._taken, 0)
        assert frame is not None
        self._taken = frame.sequence
        return CroppedFrame(frame, frame.image)


def simulate(poll_interval_ms: int, fps: float, seconds: float = 10.0,
             processing_s: float = 0.01) -> tuple[list[float], SimulatedCamera]:
    """The moments frames were taken for processing, and the camera (how many it decoded and dropped)."""
    clock = Clock()
    camera = SimulatedCamera(clock, fps)
    pacer = FramePacer(poll_interval_ms / 1000, clock=clock, sleep=clock.sleep)
    taken: list[float] = []

    async def consume() -> None:
        while clock.now < seconds:
            got = await pacer.next_frame(camera, 1.0)
            assert got is not None
            assert got.frame.captured_at == (camera.decoded - 1) / fps, "the newest frame, never an older one"
            taken.append(clock.now)
            clock.now += processing_s

    asyncio.run(consume())
    return taken, camera


@pytest.mark.parametrize(("fps", "poll_interval_ms", "per_second"), [
    (25, 0, 25),  # no floor: every frame (the pipeline keeps up)
    (25, 100, 10),  # the original's shipped value
    (25, 250, 4),
    (5, 100, 5),  # target_fps 5 already delivers fewer: max(100 ms, 1/5 s) between frames
    (20, 100, 10),  # target_fps 20: max(100 ms, 50 ms)
    (20, 40, 20),
])
def test_frames_processed_per_second(fps: float, poll_interval_ms: int, per_second: int) -> None:
    taken, camera = simulate(poll_interval_ms, fps)
    assert abs(len(taken) - per_second * 10) <= 1
    gaps = np.diff(taken)
    assert gaps.min() >= max(poll_interval_ms / 1000, 1 / fps) - 1e-9
    assert camera.decoded >= fps * 10, "decoding is never slowed down"
    assert camera.slot.dropped == camera.decoded - len(taken), "every frame not processed was skipped in the slot"


def test_the_pacer_waits_out_the_rest_of_the_interval_only() -> None:
    clock = Clock(now=5.0)
    pacer = FramePacer(0.1, clock=clock, sleep=clock.sleep)
    assert pacer.delay() == 0.0, "the first frame is taken at once"
    camera = SimulatedCamera(clock, fps=1000)
    asyncio.run(pacer.next_frame(camera, 1.0))
    clock.now += 0.03
    assert pacer.delay() == pytest.approx(0.07)
    clock.now += 0.5
    assert pacer.delay() == 0.0
    assert FramePacer.from_poll_interval(0).delay() == 0.0
    assert FramePacer.from_poll_interval(250).interval_s == 0.25


def test_a_timeout_does_not_restart_the_interval() -> None:
    clock = Clock()

    class Silent:
        async def next_frame_async(self, timeout: float) -> None:
            clock.now += timeout

    pacer = FramePacer(0.1, clock=clock, sleep=clock.sleep)
    asyncio.run(pacer.next_frame(Silent(), 1.0))
    assert pacer.delay() == 0.0


async def test_the_pod_paces_each_display_by_its_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``CameraPod._serve`` takes its frames through a pacer built from ``PodSpec.poll_interval_ms``."""
    clock = Clock()
    monkeypatch.setattr(runtime, "FramePacer", type("SimulatedPacer", (FramePacer,), {
        "from_poll_interval": classmethod(lambda cls, ms: cls(ms / 1000, clock=clock, sleep=clock.sleep))}))
    spec = PodSpec(name="cam-0123456789ab", stream=StreamSpec(url="rtsp://127.0.0.1:9/x", kind="rtsp"),
                   subscriptions=[DisplaySubscription(identifier="d;c", model_url="http://127.0.0.1:9/m.mpta",
                                                      model_id=1, model_name="m")],
                   broker_url="ws://127.0.0.1:9/internal/pods/cam-0123456789ab", poll_interval_ms=200)
    pod = CameraPod(spec, PodSettings(cache_dir=tmp_path))
    processed: list[float] = []

    async def process(_: Any, engine: Any, visits: Any, image: Any, captured_at: float, **__: Any) -> Processed:
        processed.append(captured_at)
        clock.now += 0.01
        if len(processed) == 20:
            raise asyncio.CancelledError
        return Processed(FrameResult("nothing", None))

    monkeypatch.setattr(DisplayProcessor, "process", process)
    monkeypatch.setattr(pod, "_visit_tracker", lambda pipeline: None)
    camera = SimulatedCamera(clock, fps=25)
    try:
        with pytest.raises(asyncio.CancelledError):
            display = Display(spec.subscriptions[0], subscription=camera,  # type: ignore[arg-type]
                              pipeline=SimpleNamespace(engine=None))  # type: ignore[arg-type]
            await pod._serve(display)
    finally:
        pod.outbox.close()
    assert min(np.diff(processed)) >= 0.2 - 1e-9
    assert camera.decoded > 90 and camera.slot.dropped > 70, "the frames in between were decoded and skipped"
