"""One display subscription of a camera as its pod serves it: its frames, its model of the moment, its visits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from camera_pod.loaded_pipelines import LoadedPipeline
from camera_pod.pipeline.results import FrameResult
from camera_pod.streams.hub import StreamSubscription
from camera_pod.visits import VisitTracker
from detector.contract.pods import CropBox, DisplaySubscription


@dataclass
class Display:
    """Served by its own task; a hot swap (``swap``) replaces its pipeline between two frames."""

    spec: DisplaySubscription
    subscription: StreamSubscription | None = None
    pipeline: LoadedPipeline | None = None
    visits: VisitTracker | None = None
    task: asyncio.Task[None] | None = None
    swap: asyncio.Task[None] | None = None
    error: str | None = None
    # Its latest processed frame's result (when, and through which crop): the console's boxes are made from it
    # only when a report is sent (once a second), not on every frame.
    seen: tuple[FrameResult, float, CropBox | None] | None = None

    @property
    def display_id(self) -> str:
        """The backend's display: the part of the subscription identifier before ``;``."""
        return self.spec.identifier.split(";", 1)[0]

    def stop(self) -> None:
        for task in (self.task, self.swap):
            if task is not None:
                task.cancel()

    async def stopped(self) -> None:
        self.stop()
        await asyncio.gather(*(t for t in (self.task, self.swap) if t is not None), return_exceptions=True)
