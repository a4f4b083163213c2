"""One camera pod: a shared stream → per-display crop → pipeline → visit policy → events to the broker."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from camera_pod import memory, processing, sightings
from camera_pod.channel import BrokerChannel
from camera_pod.displays import Display
from camera_pod.loaded_pipelines import LoadedPipeline, LoadedPipelines
from camera_pod.metrics import PodMetrics
from camera_pod.outbox import EventOutbox
from camera_pod.pipeline.engine import FrameContext
from camera_pod.pipeline.results import FrameResult
from camera_pod.settings import PodSettings
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.cropping import Crop
from camera_pod.streams.frames import Frame
from camera_pod.streams.hub import StreamHub, StreamSubscription
from camera_pod.streams.pacing import FramePacer
from camera_pod.usage import UsageSampler
from camera_pod.visit_memory import VisitMemory
from camera_pod.visits import VisitTracker
from detector.contract.pods import DetectionEvent, Displays, DisplaySubscription, PodHealth, PodSpec, StreamReport
from detector.kit.errors import DetectorError

log = logging.getLogger(__name__)
STARTUP_GRACE_S = 30.0


def stream_config(spec: PodSpec) -> StreamConfig:
    return StreamConfig(url=spec.stream.url, kind=spec.stream.kind, target_fps=spec.target_fps,
                        snapshot_interval_ms=spec.stream.snapshot_interval_ms or 1000,
                        reconnect_interval_sec=spec.reconnect_interval_sec, max_retries=spec.max_retries)


def expected_interval_s(spec: PodSpec) -> float | None:
    """The configured frame interval: only the visit policy's prior until it has measured the real one."""
    if spec.stream.kind == "snapshot":
        return (spec.stream.snapshot_interval_ms or 1000) / 1000
    return 1 / spec.target_fps if spec.target_fps else None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("applying the display subscriptions failed", exc_info=task.exception())


@dataclass
class CameraPod:
    spec: PodSpec
    settings: PodSettings
    http_port: int = 0
    metrics: PodMetrics = field(default_factory=PodMetrics)
    outbox: EventOutbox = field(init=False)
    visit_memory: VisitMemory = field(init=False)
    hub: StreamHub = field(default_factory=StreamHub)
    pipelines: LoadedPipelines = field(init=False)
    _started: float = field(default_factory=time.monotonic)
    _started_at: float = field(default_factory=time.time)
    _displays: dict[str, Display] = field(default_factory=dict)
    _config: StreamConfig | None = None
    _applying: asyncio.Lock = field(default_factory=asyncio.Lock)
    _swapping: asyncio.Lock = field(default_factory=asyncio.Lock)  # one archive beside the running ones at most
    channel: BrokerChannel | None = None
    usage: UsageSampler = field(default_factory=UsageSampler)

    def __post_init__(self) -> None:
        self.pipelines = LoadedPipelines(self.spec.name, self.settings, self.metrics)
        self.outbox = EventOutbox(self.settings.durable_dir / f"{self.spec.name}-events.sqlite3",
                                  max_events=self.settings.event_outbox_max_events)
        self.visit_memory = VisitMemory(self.settings.durable_dir / f"{self.spec.name}-visits.json")

    async def run(self) -> None:
        token = self.settings.auth_token.get_secret_value() if self.settings.auth_token else None
        self.channel = BrokerChannel(self.spec.broker_url, self.outbox, self.report, token=token,
                                     on_displays=self._displays_sent)
        self._config = stream_config(self.spec)
        channel = asyncio.create_task(self.channel.run(), name="broker-channel")
        try:
            await self.apply(self.spec.subscriptions)
            await channel
        finally:
            channel.cancel()
            for display in list(self._displays.values()):
                display.stop()
            await self.close()

    # ---- live display changes -------------------------------------------------------------------

    def _displays_sent(self, message: Displays) -> None:
        task = asyncio.get_running_loop().create_task(self.apply(message.subscriptions), name="apply-displays")
        task.add_done_callback(_log_failure)

    async def apply(self, wanted: list[DisplaySubscription]) -> None:
        """Serve exactly ``wanted``, live: a display added or removed, a crop or a model changed costs the
        other displays nothing (one decode for all; their visits and classification reuse stay)."""
        async with self._applying:
            by_id = {display.identifier: display for display in wanted}
            for identifier in [i for i in self._displays if i not in by_id]:
                await self._remove(identifier)
            for display in wanted:
                current = self._displays.get(display.identifier)
                if current is None:
                    self._add(display)
                elif current.spec != display:
                    self._change(current, display)
            self.spec = self.spec.model_copy(update={"subscriptions": list(wanted)})

    def _add(self, spec: DisplaySubscription) -> None:
        display = Display(spec)
        self._displays[spec.identifier] = display
        display.task = asyncio.create_task(self._start(display), name=spec.identifier)
        log.info("display added", extra={"subscription": spec.identifier})

    async def _remove(self, identifier: str) -> None:
        display = self._displays.pop(identifier)
        await display.stopped()
        if display.subscription is not None:
            await asyncio.to_thread(self.hub.unsubscribe, display.subscription)
        await self._release_unused()
        log.info("display removed", extra={"subscription": identifier})

    def _change(self, display: Display, spec: DisplaySubscription) -> None:
        before, display.spec = display.spec, spec
        if spec.crop != before.crop and display.subscription is not None:
            display.subscription.crop = Crop(**spec.crop.model_dump()) if spec.crop else None
            log.info("display crop changed", extra={"subscription": spec.identifier})
        if spec.model_url == before.model_url:
            return
        if display.pipeline is None:  # still loading its first model: load the new one instead
            display.stop()
            display.task = asyncio.create_task(self._start(display), name=spec.identifier)
            return
        if display.swap is not None:
            display.swap.cancel()
        display.swap = asyncio.create_task(self._swap(display), name=f"swap-{spec.identifier}")

    async def _start(self, display: Display) -> None:
        """Models first: frames decoded while a model loads would only be dropped."""
        display.pipeline = await self._load_retrying(display, display.spec.model_url, swap=False)
        display.visits = self._visit_tracker(display.pipeline)
        if display.visits is not None:
            display.visits.resume = self.visit_memory.recall(display.spec.identifier)
        assert self._config is not None
        crop = Crop(**display.spec.crop.model_dump()) if display.spec.crop else None
        display.subscription = self.hub.subscribe(display.spec.identifier, self._config, crop)
        await self._serve(display)

    async def _swap(self, display: Display) -> None:
        """Hot model swap: the new archive is loaded and tried beside the running one, then the display switches
        between two frames. Until it works the old model keeps running; the display's error says why."""
        url = display.spec.model_url
        started = time.perf_counter()
        log.info("loading a new model beside the running one", extra={"subscription": display.spec.identifier,
                                                                       "model": display.spec.model_id})
        pipeline = await self._load_retrying(display, url, swap=True)
        if url != display.spec.model_url:
            return  # changed again meanwhile: that change's swap takes over
        tracking_changed = pipeline.archive.config.pipeline.tracking != \
            (display.pipeline.archive.config.pipeline.tracking if display.pipeline else None)
        display.pipeline, display.error, display.swap = pipeline, None, None
        if tracking_changed:
            display.visits = self._visit_tracker(pipeline)
        log.info("model swapped", extra={"subscription": display.spec.identifier, "model": display.spec.model_id,
                                         "sha256": pipeline.archive.sha256[:12],
                                         "after_s": round(time.perf_counter() - started, 2)})
        await self._release_unused()

    async def _load_retrying(self, display: Display, url: str, *, swap: bool) -> LoadedPipeline:
        attempt = 0
        while True:
            try:
                if not swap:
                    return await self.pipelines.load(url)
                async with self._swapping:
                    memory.check_room_for_another(self._pipelines_in_use())
                    pipeline = await self.pipelines.load(url)
                    await self._try_first_inference(display, pipeline)
                    return pipeline
            except (DetectorError, MemoryError) as exc:
                attempt += 1
                delay = min(60.0, 2.0 * attempt)
                what = "new model kept out; the running one stays" if swap else "cannot load model"
                display.error = f"model {display.spec.model_id}: {exc}"
                log.error(f"{what}; retrying", extra={"subscription": display.spec.identifier, "error": str(exc),
                                                      "retry_in_s": delay})
                await self._release_unused()
                await asyncio.sleep(delay)

    async def _try_first_inference(self, display: Display, pipeline: LoadedPipeline) -> None:
        """A new archive must run once on this camera's latest frame (no writes) before the display uses it."""
        frame = display.subscription.latest() if display.subscription is not None else None
        if frame is None:
            return
        context = FrameContext(camera_id=display.spec.identifier, display_id=display.display_id,
                               captured_at=datetime.fromtimestamp(frame.captured_at, UTC))
        try:
            await pipeline.engine.process(np.ascontiguousarray(frame.image), context, act=False)
        except Exception as exc:
            raise DetectorError(f"first inference failed: {type(exc).__name__}: {exc}") from exc

    def _pipelines_in_use(self) -> list[LoadedPipeline]:
        return [d.pipeline for d in self._displays.values() if d.pipeline is not None]

    async def _release_unused(self) -> None:
        await self.pipelines.release_unused(self._pipelines_in_use())

    @property
    def model_error(self) -> str | None:
        """The first display error (a model that does not load, or a swap kept out), if any."""
        return next((d.error for d in self._displays.values() if d.error), None)

    async def close(self) -> None:
        """Idempotent: both the run loop and the process's shutdown path call it."""
        await asyncio.to_thread(self.hub.close)
        await self.pipelines.close()
        self.outbox.close()

    # ---- per display ----------------------------------------------------------------------------

    async def _serve(self, display: Display) -> None:
        """Frames of this display, each through the display's model of the moment (a swap takes the next frame)."""
        identifier = display.spec.identifier
        processor = processing.DisplayProcessor.from_settings(identifier, self.settings)
        pacer = FramePacer.from_poll_interval(self.spec.poll_interval_ms)  # frames in between are skipped
        assert display.subscription is not None
        while True:
            got = await pacer.next_frame(display.subscription, 1.0)
            if got is None or display.pipeline is None:
                continue
            crop = display.spec.crop
            share = (got.frame.sequence, got.frame.captured_at, (crop.x1, crop.y1, crop.x2, crop.y2) if crop else None)
            started = time.perf_counter()
            try:
                processed = await processor.process(display.pipeline.engine, display.visits, np.asarray(got.image),
                                                    got.frame.captured_at, share=share)
                self._deliver(display.spec, display.visits, processed, got.frame.captured_at)
                display.seen = (processed.result, got.frame.captured_at, crop)
            except Exception:  # one bad frame never stops the camera
                log.exception("pipeline failed on a frame", extra={"subscription": identifier})
                processed = None
            self._count(display.spec, processor)
            if processed is None or not processed.gated:
                self.metrics.pipeline_seconds.labels(identifier).observe(time.perf_counter() - started)

    def _visit_tracker(self, pipeline: LoadedPipeline) -> VisitTracker | None:
        return processing.visit_tracker(pipeline.archive, event_mode=self.spec.event_mode,
                                        stable_frames=self.spec.stable_frames, gap_s=self.spec.visit_gap_s,
                                        expected_interval_s=expected_interval_s(self.spec))

    def _count(self, display: DisplaySubscription, processor: processing.DisplayProcessor) -> None:
        if processor.reuse is not None:
            counter = self.metrics.classifications
            counter.labels(display.identifier, "reused").inc(processor.reuse.hits)
            counter.labels(display.identifier, "run").inc(processor.reuse.misses)
            processor.reuse.hits = processor.reuse.misses = 0
        if processor.gate is not None:
            for outcome, count in processor.gate.take_counts().items():
                self.metrics.gating.labels(display.identifier, outcome).inc(count)

    def _deliver(self, display: DisplaySubscription, visits: VisitTracker | None, processed: processing.Processed,
                 captured_at: float) -> None:
        """The frame's events into the outbox: its fields (per-frame events), or its visits' announcements."""
        if processed.frame_fields is not None:
            self._count_failures(processed.result)
            if processed.frame_fields:
                self._emit(display, processed.frame_fields, captured_at, uuid.uuid4().hex, update=False)
            return
        for announcement in processed.announcements:
            if announcement.written is not None:
                self._count_failures(announcement.written)
            decision = announcement.decision
            self._emit(display, decision.fields, decision.captured_at, decision.visit_id, update=decision.update)
        if visits is not None:
            self.visit_memory.remember(display.identifier, visits.announced(), time.monotonic())

    def _count_failures(self, result: FrameResult) -> None:
        for outcome in result.failed_actions:
            self.metrics.action_failures.labels(outcome.action_type).inc()

    def _emit(self, display: DisplaySubscription, fields: dict[str, str], captured_at: float, visit: str,
              *, update: bool) -> None:
        event = DetectionEvent(id=uuid.uuid4().hex, subscription=display.identifier, captured_at=captured_at,
                               fields=dict(fields), visit=visit, update=update)
        self.outbox.add(event)
        self.metrics.events.labels(display.identifier, "update" if update else "visit").inc()
        log.info("detection", extra={"subscription": display.identifier, "fields": fields, "visit": visit[:8],
                                     "update": update})
        if self.channel is not None:
            self.channel.nudge()

    # ---- status ---------------------------------------------------------------------------------

    def _any_subscription(self) -> StreamSubscription | None:
        return next((d.subscription for d in self._displays.values() if d.subscription is not None), None)

    def latest_frame(self) -> Frame | None:
        subscription = self._any_subscription()
        return subscription.latest() if subscription else None

    def report(self) -> StreamReport:
        subscription = self._any_subscription()
        status = subscription.status() if subscription else None
        m = self.metrics
        if status is not None:
            m.online.set(status.online)
            m.fps.set(status.fps)
            m.frames.set(status.frames)
            m.reconnects.set(status.reconnects)
            m.dropped.set(status.dropped_frames)
            m.decode_errors.set(status.decode_errors)
        m.outbox.set(len(self.outbox))
        error = self.model_error or (status.last_error if status else None)
        # A display on its old model while a new one is kept out still runs: only one without a model is down.
        modelless = any(d.pipeline is None for d in self._displays.values())
        return StreamReport(online=bool(status and status.online and not modelless),
                            state=status.state.value if status else "starting", fps=status.fps if status else 0.0,
                            last_frame_at=status.last_frame_at if status else None,
                            frames=status.frames if status else 0, reconnects=status.reconnects if status else 0,
                            last_error=error, http_port=self.http_port, usage=self.usage.sample(),
                            display_errors={i: d.error for i, d in self._displays.items() if d.error},
                            sightings={i: sightings.sighting(*d.seen) for i, d in self._displays.items() if d.seen},
                            started_at=self._started_at)

    def health(self) -> PodHealth:
        ok, detail = self.healthy()
        return PodHealth(ok=ok, detail=detail, report=self.report())

    def healthy(self) -> tuple[bool, str]:
        subscription = self._any_subscription()
        status = subscription.status() if subscription else None
        if status is not None and status.online:
            return True, "frames flowing"
        if time.monotonic() - self._started < STARTUP_GRACE_S:
            return True, "starting"
        return False, (status.last_error if status else None) or "no frames"

