"""One display's frames, one at a time: change gate → pipeline → visit policy → the announced visit's writes.

Shared by the camera pod (``CameraPod._serve``), ``detector pipeline run`` and the pipeline bench, so a file run
by hand and the bench's figures go through exactly what a camera's frames go through. Sending the events is the
caller's: the pod queues them for the broker, the command prints them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from camera_pod.gating import ChangeGate, GateSettings
from camera_pod.inference.models import Image
from camera_pod.mpta.loading import LoadedArchive
from camera_pod.ocr.reading import TextRead
from camera_pod.pipeline.engine import FrameContext
from camera_pod.pipeline.results import FrameResult
from camera_pod.pipeline.reuse import ClassificationReuse
from camera_pod.settings import PodSettings
from camera_pod.visits import VisitDecision, VisitTracker


class Engine(Protocol):
    """What a display's frames go through: ``PipelineEngine`` (a test may replay recorded results instead)."""

    async def process(self, frame: Image, context: FrameContext, *, act: bool = True,
                      reuse: ClassificationReuse | None = None, share: Hashable | None = None) -> FrameResult: ...


@dataclass(frozen=True)
class Announcement:
    decision: VisitDecision
    written: FrameResult | None  # the actions' run on the visit's best frame; None for an update (nothing written)


@dataclass(frozen=True)
class Processed:
    """What one frame gave. A gated frame repeats the last processed frame's result (the picture is the same)."""

    result: FrameResult
    gated: bool = False
    announcements: tuple[Announcement, ...] = ()
    frame_fields: dict[str, str] | None = None  # per-frame events (no visit policy): this frame's fields, written


def visit_tracker(archive: LoadedArchive, *, event_mode: str = "visit", stable_frames: int = 3, gap_s: float = 0.7,
                  expected_interval_s: float | None = None) -> VisitTracker | None:
    """The root node's ``tracking`` settings win over the pod's; None (per-frame events) in ``frame`` mode or when
    the archive disables tracking."""
    tracking = archive.config.pipeline.tracking
    if event_mode == "frame" or (tracking is not None and not tracking.enabled):
        return None
    return VisitTracker(stable_frames=tracking.stabilityThreshold if tracking else stable_frames, gap_s=gap_s,
                        method=tracking.method if tracking else "bytetrack", expected_interval_s=expected_interval_s)


def gate_settings(settings: PodSettings) -> GateSettings | None:
    if not settings.gating:
        return None
    return GateSettings(pixel_threshold=settings.gating_pixel_threshold,
                        area_threshold=settings.gating_area_threshold, max_skip_s=settings.gating_max_skip_s,
                        ignore=settings.gating_ignore)


@dataclass
class DisplayProcessor:
    """Per display subscription: its classification reuse, its change gate and the last frame it processed.

    The engine and the visit tracker are passed per frame: a hot model swap replaces them between two frames (the
    gate then lets the next frame through). ``write=False`` (``--no-actions``) skips the announced visit's writes.
    """

    identifier: str
    reuse: ClassificationReuse | None = None
    gate: ChangeGate | None = None
    write: bool = True
    last: FrameResult | None = None
    _serving: tuple[int, int] = field(default=(0, 0), init=False)

    @classmethod
    def from_settings(cls, identifier: str, settings: PodSettings, *, write: bool = True) -> DisplayProcessor:
        reuse = ClassificationReuse(max_age_s=settings.classify_interval_s, growth=settings.classify_growth) \
            if settings.classify_interval_s > 0 else None
        gating = gate_settings(settings)
        return cls(identifier, reuse, ChangeGate(gating) if gating else None, write)

    @property
    def display_id(self) -> str:
        return self.identifier.split(";", 1)[0]

    def context(self, captured_at: float, reads: Mapping[str, TextRead] | None = None) -> FrameContext:
        return FrameContext(camera_id=self.identifier, display_id=self.display_id,
                            captured_at=datetime.fromtimestamp(captured_at, UTC), reads=reads or {})

    async def process(self, engine: Engine, visits: VisitTracker | None, image: Image, captured_at: float,
                      *, share: Hashable | None = None) -> Processed:
        """``share``: what identifies this image among the displays of the camera (frame and crop), so displays
        on the same archive run one detector pass on it between them."""
        if visits is None:  # per-frame events, as the original worker: every frame analysed and written
            result = await engine.process(np.ascontiguousarray(image), self.context(captured_at), reuse=self.reuse)
            self.last = result
            return Processed(result, frame_fields=result.classified_fields())
        look = None
        if self.gate is not None:
            serving = (id(engine), id(visits))
            if serving != self._serving or self.last is None:
                self.gate.reset()
                self._serving = serving
            look = self.gate.look(image, captured_at, busy=visits.needs_every_frame(captured_at))
            if not look.run and self.last is not None:
                visits.hold(captured_at)
                return Processed(self.last, gated=True)
        image = np.ascontiguousarray(image)
        result = await engine.process(image, self.context(captured_at), act=False, reuse=self.reuse, share=share)
        if look is not None and self.gate is not None:
            self.gate.ran(look, captured_at)
        self.last = result
        announcements = [await self._announce(engine, decision)
                         for decision in visits.observe(result, image, captured_at)]
        return Processed(result, announcements=tuple(announcements))

    async def _announce(self, engine: Engine, decision: VisitDecision) -> Announcement:
        """A visit's first announcement writes (Redis image, PostgreSQL row) from its best frame, with the visit's
        voted texts (its plate) rather than that frame's own reads; updates do not."""
        if decision.update or not self.write:
            return Announcement(decision, None)
        context = self.context(decision.captured_at, decision.reads)
        return Announcement(decision, await engine.process(decision.image, context))
