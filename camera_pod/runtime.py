"""One camera pod: a shared stream → per-display crop → pipeline → visit policy → events to the broker."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from camera_pod.actions.overrides import ServiceOverrides
from camera_pod.actions.services import ServiceSink
from camera_pod.channel import BrokerChannel
from camera_pod.inference import selection
from camera_pod.metrics import PodMetrics
from camera_pod.mpta.fetching import DownloadLimits
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.mpta.schema import PipelineConfig
from camera_pod.outbox import EventOutbox
from camera_pod.outbox_actions import ActionOutbox, DurableSink, outbox_path
from camera_pod.outbox_store import OutboxStore
from camera_pod.pipeline.engine import FrameContext, PipelineEngine
from camera_pod.pipeline.results import FrameResult
from camera_pod.pipeline.reuse import ClassificationReuse
from camera_pod.settings import PodSettings
from camera_pod.streams.config import StreamConfig
from camera_pod.streams.cropping import Crop
from camera_pod.streams.frames import Frame
from camera_pod.streams.hub import StreamHub, StreamSubscription
from camera_pod.streams.pacing import FramePacer
from camera_pod.usage import UsageSampler
from camera_pod.visit_memory import VisitMemory
from camera_pod.visits import VisitDecision, VisitTracker
from detector.contract.pods import DetectionEvent, DisplaySubscription, PodHealth, PodSpec, StreamReport
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


@dataclass
class _Pipeline:
    archive: LoadedArchive
    engine: PipelineEngine
    sink: ServiceSink | DurableSink


@dataclass
class CameraPod:
    spec: PodSpec
    settings: PodSettings
    http_port: int = 0
    metrics: PodMetrics = field(default_factory=PodMetrics)
    outbox: EventOutbox = field(init=False)
    visit_memory: VisitMemory = field(init=False)
    hub: StreamHub = field(default_factory=StreamHub)
    services: ServiceOverrides = field(default_factory=ServiceOverrides)
    model_error: str | None = None
    _started: float = field(default_factory=time.monotonic)
    _subscriptions: list[StreamSubscription] = field(default_factory=list)
    _pipelines: dict[str, _Pipeline] = field(default_factory=dict)
    _durable_sinks: dict[Path, DurableSink] = field(default_factory=dict)
    channel: BrokerChannel | None = None
    store: ArchiveStore = field(init=False)
    usage: UsageSampler = field(default_factory=UsageSampler)

    def __post_init__(self) -> None:
        limits = DownloadLimits.from_settings(self.settings)
        load_model = selection.model_loader(self.settings.cache_dir, selection.options_from_settings(self.settings))
        self.store = ArchiveStore(self.settings.cache_dir, download_limits=limits, load_model=load_model)
        self.outbox = EventOutbox(self.settings.durable_dir / f"{self.spec.name}-events.sqlite3",
                                  max_events=self.settings.event_outbox_max_events)
        self.visit_memory = VisitMemory(self.settings.durable_dir / f"{self.spec.name}-visits.json")

    async def run(self) -> None:
        token = self.settings.auth_token.get_secret_value() if self.settings.auth_token else None
        self.channel = BrokerChannel(self.spec.broker_url, self.outbox, self.report, token=token)
        config = stream_config(self.spec)
        tasks = [asyncio.create_task(self.channel.run(), name="broker-channel")]
        # Models first: frames decoded while a model loads would only be dropped.
        pipelines = [await self._pipeline(display, self.store) for display in self.spec.subscriptions]
        for display, pipeline in zip(self.spec.subscriptions, pipelines, strict=True):
            crop = Crop(**display.crop.model_dump()) if display.crop else None
            subscription = self.hub.subscribe(display.identifier, config, crop)
            self._subscriptions.append(subscription)
            tasks.append(asyncio.create_task(self._serve(display, subscription, pipeline), name=display.identifier))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await self.close()

    async def close(self) -> None:
        """Idempotent: both the run loop and the process's shutdown path call it."""
        await asyncio.to_thread(self.hub.close)
        pipelines, self._pipelines = list(self._pipelines.values()), {}
        self._durable_sinks = {}
        for pipeline in pipelines:
            pipeline.engine.close()
        for sink in {id(pipeline.sink): pipeline.sink for pipeline in pipelines}.values():
            await sink.close()  # a durable one first gives its queue close_timeout_s to drain
        self.outbox.close()

    # ---- models ---------------------------------------------------------------------------------

    async def _pipeline(self, display: DisplaySubscription, store: ArchiveStore) -> _Pipeline:
        attempt = 0
        while True:
            try:
                archive = await store.load(display.model_url)
                config = self.services.apply(archive.config)
                break
            except DetectorError as exc:
                attempt += 1
                self.model_error = f"model {display.model_id}: {exc}"
                delay = min(60.0, 2.0 * attempt)
                log.error("cannot load model; retrying", extra={"subscription": display.identifier,
                                                                "error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
        self.model_error = None
        if archive.sha256 not in self._pipelines:
            sink = self._sink(config)
            engine = PipelineEngine(archive, sink, max_workers=self.settings.inference_workers)
            self._pipelines[archive.sha256] = _Pipeline(archive, engine, sink)
        return self._pipelines[archive.sha256]

    def _sink(self, config: PipelineConfig) -> ServiceSink | DurableSink:
        """Writes go through the durable outbox (one SQLite file per pod and services) unless it is disabled."""
        s = self.settings
        if not s.action_outbox:
            return ServiceSink(config, client_name=f"camera-pod-{self.spec.name}")
        path = outbox_path(s.durable_dir, self.spec.name, config)
        if path in self._durable_sinks:  # archives naming the same services share one queue (one drainer each)
            return self._durable_sinks[path]
        writer = ServiceSink(config, client_name=f"camera-pod-{self.spec.name}", client_retries=False)
        store = OutboxStore(path, max_items=s.action_outbox_max_items, max_bytes=s.action_outbox_max_bytes)
        outbox = ActionOutbox(store, writer, metrics=self.metrics, max_backoff_s=s.action_outbox_max_backoff_s,
                              close_timeout_s=s.action_outbox_close_timeout_s)
        outbox.start()
        self._durable_sinks[path] = DurableSink.for_config(outbox, config)
        return self._durable_sinks[path]

    # ---- per display ----------------------------------------------------------------------------

    async def _serve(self, display: DisplaySubscription, subscription: StreamSubscription,
                     pipeline: _Pipeline) -> None:
        visits = self._visit_tracker(pipeline)
        if visits is not None:
            visits.resume = self.visit_memory.recall(display.identifier)
        reuse = ClassificationReuse(max_age_s=self.settings.classify_interval_s, growth=self.settings.classify_growth) \
            if self.settings.classify_interval_s > 0 else None
        display_id = display.identifier.split(";", 1)[0]
        pacer = FramePacer.from_poll_interval(self.spec.poll_interval_ms)  # frames in between are skipped
        while True:
            got = await pacer.next_frame(subscription, 1.0)
            if got is None:
                continue
            image = np.ascontiguousarray(got.image)
            context = FrameContext(camera_id=display.identifier, display_id=display_id,
                                   captured_at=datetime.fromtimestamp(got.frame.captured_at, UTC))
            started = time.perf_counter()
            try:
                await self._process(display, pipeline, visits, image, context, got.frame, reuse)
            except Exception:  # one bad frame never stops the camera
                log.exception("pipeline failed on a frame", extra={"subscription": display.identifier})
            if reuse is not None:
                self._count_reuse(display, reuse)
            self.metrics.pipeline_seconds.labels(display.identifier).observe(time.perf_counter() - started)

    def _visit_tracker(self, pipeline: _Pipeline) -> VisitTracker | None:
        """The root node's ``tracking`` settings win over the pod's defaults; disabled means per-frame events."""
        tracking = pipeline.archive.config.pipeline.tracking
        if self.spec.event_mode == "frame" or (tracking is not None and not tracking.enabled):
            return None
        method = tracking.method if tracking else "bytetrack"
        stable = tracking.stabilityThreshold if tracking else self.spec.stable_frames
        return VisitTracker(stable_frames=stable, gap_s=self.spec.visit_gap_s, method=method,
                            expected_interval_s=expected_interval_s(self.spec))

    def _count_reuse(self, display: DisplaySubscription, reuse: ClassificationReuse) -> None:
        counter = self.metrics.classifications
        counter.labels(display.identifier, "reused").inc(reuse.hits)
        counter.labels(display.identifier, "run").inc(reuse.misses)
        reuse.hits = reuse.misses = 0

    async def _process(self, display: DisplaySubscription, pipeline: _Pipeline, visits: VisitTracker | None,
                       image: np.ndarray, context: FrameContext, frame: Frame,
                       reuse: ClassificationReuse | None) -> None:
        if visits is None:
            result = await pipeline.engine.process(image, context, reuse=reuse)
            self._count_failures(result)
            fields = result.classified_fields()
            if fields:
                self._emit(display, fields, frame.captured_at, uuid.uuid4().hex, update=False)
            return
        result = await pipeline.engine.process(image, context, act=False, reuse=reuse)
        for decision in visits.observe(result, image, frame.captured_at):
            await self._announce(display, pipeline, context, decision)
        self.visit_memory.remember(display.identifier, visits.announced(), time.monotonic())

    async def _announce(self, display: DisplaySubscription, pipeline: _Pipeline, context: FrameContext,
                        decision: VisitDecision) -> None:
        if not decision.update:
            best_context = FrameContext(context.camera_id, context.display_id,
                                        datetime.fromtimestamp(decision.captured_at, UTC))
            written = await pipeline.engine.process(decision.image, best_context)
            self._count_failures(written)
        self._emit(display, decision.fields, decision.captured_at, decision.visit_id, update=decision.update)

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

    def latest_frame(self) -> Frame | None:
        return self._subscriptions[0].latest() if self._subscriptions else None

    def report(self) -> StreamReport:
        status = self._subscriptions[0].status() if self._subscriptions else None
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
        return StreamReport(online=bool(status and status.online and not self.model_error),
                            state=status.state.value if status else "starting", fps=status.fps if status else 0.0,
                            last_frame_at=status.last_frame_at if status else None,
                            frames=status.frames if status else 0, reconnects=status.reconnects if status else 0,
                            last_error=error, http_port=self.http_port, usage=self.usage.sample())

    def health(self) -> PodHealth:
        ok, detail = self.healthy()
        return PodHealth(ok=ok, detail=detail, report=self.report())

    def healthy(self) -> tuple[bool, str]:
        status = self._subscriptions[0].status() if self._subscriptions else None
        if status is not None and status.online:
            return True, "frames flowing"
        if time.monotonic() - self._started < STARTUP_GRACE_S:
            return True, "starting"
        return False, (status.last_error if status else None) or "no frames"

