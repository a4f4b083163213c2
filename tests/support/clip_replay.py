"""A drawn clip of plated cars through the pod's per-frame path (``DisplayProcessor``, no change gate: every frame
runs), with what it announced and the rows it would write."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from camera_pod.mpta.loading import LoadedArchive
from camera_pod.pipeline.engine import PipelineEngine
from camera_pod.processing import Announcement, DisplayProcessor, Processed
from camera_pod.visits import VisitTracker
from tests.fixtures import plates
from tests.support.action_sinks import RowRecorder


@dataclass(frozen=True)
class ClipReplay:
    truth: list[plates.ClipVisit]
    processed: list[Processed]
    rows: list[dict[str, str | None]]

    @property
    def announced(self) -> list[Announcement]:
        return [announcement for processed in self.processed for announcement in processed.announcements]

    @property
    def first_announcements(self) -> list[Announcement]:
        return [announcement for announcement in self.announced if not announcement.decision.update]


def replay_clip(archive: LoadedArchive,
                cars: Sequence[tuple[str, str, tuple[int, int, int], str | None]]) -> ClipReplay:
    """``plates.plated_clip(cars)`` at 10 frames/s through ``archive``; each announcement writes its row."""
    frames, truth = plates.plated_clip(cars)
    tracker = VisitTracker(stable_frames=3, expected_interval_s=0.1)
    sink = RowRecorder()
    engine = PipelineEngine(archive, sink)
    processor = DisplayProcessor("d;c")

    async def replay() -> list[Processed]:
        return [await processor.process(engine, tracker, image, index * 0.1) for index, image in enumerate(frames)]

    try:
        processed = asyncio.run(replay())
    finally:
        engine.close()
    return ClipReplay(truth, processed, sink.rows)
