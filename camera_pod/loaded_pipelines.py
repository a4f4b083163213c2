"""The pipelines a camera pod holds in memory: one per archive, shared by the displays that use it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from camera_pod.actions.overrides import ServiceOverrides
from camera_pod.actions.services import ServiceSink
from camera_pod.inference import selection
from camera_pod.metrics import PodMetrics
from camera_pod.mpta.fetching import DownloadLimits
from camera_pod.mpta.loading import ArchiveStore, LoadedArchive
from camera_pod.mpta.schema import PipelineConfig
from camera_pod.ocr.recognisers import Recognisers
from camera_pod.outbox_actions import ActionOutbox, DurableSink, outbox_path
from camera_pod.outbox_store import OutboxStore
from camera_pod.pipeline.engine import PipelineEngine
from camera_pod.settings import PodSettings

log = logging.getLogger(__name__)


@dataclass
class LoadedPipeline:
    archive: LoadedArchive
    engine: PipelineEngine
    sink: ServiceSink | DurableSink


@dataclass
class LoadedPipelines:
    """Archives by content (sha256): two displays on the same archive run one engine and one write queue."""

    pod_name: str
    settings: PodSettings
    metrics: PodMetrics
    services: ServiceOverrides = field(default_factory=ServiceOverrides)
    store: ArchiveStore = field(init=False)
    _by_sha: dict[str, LoadedPipeline] = field(default_factory=dict)
    _durable_sinks: dict[Path, DurableSink] = field(default_factory=dict)

    def __post_init__(self) -> None:
        limits = DownloadLimits.from_settings(self.settings)
        load_model = selection.model_loader(self.settings.cache_dir, selection.options_from_settings(self.settings))
        self.store = ArchiveStore(self.settings.cache_dir, download_limits=limits, load_model=load_model,
                                  recognisers=Recognisers(self.settings.ocr_threads))

    async def load(self, url: str) -> LoadedPipeline:
        archive = await self.store.load(url)
        if archive.sha256 not in self._by_sha:
            config = self.services.apply(archive.config)
            sink = self.sink(config)
            engine = PipelineEngine(archive, sink, max_workers=self.settings.inference_workers)
            self._by_sha[archive.sha256] = LoadedPipeline(archive, engine, sink)
        return self._by_sha[archive.sha256]

    def sink(self, config: PipelineConfig) -> ServiceSink | DurableSink:
        """Writes go through the durable outbox (one SQLite file per pod and services) unless it is disabled."""
        s = self.settings
        client_name = f"camera-pod-{self.pod_name}"
        if not s.action_outbox:
            return ServiceSink(config, client_name=client_name)
        path = outbox_path(s.durable_dir, self.pod_name, config)
        if path in self._durable_sinks:  # archives naming the same services share one queue (one drainer each)
            return self._durable_sinks[path]
        writer = ServiceSink(config, client_name=client_name, client_retries=False)
        store = OutboxStore(path, max_items=s.action_outbox_max_items, max_bytes=s.action_outbox_max_bytes)
        outbox = ActionOutbox(store, writer, metrics=self.metrics, max_backoff_s=s.action_outbox_max_backoff_s,
                              close_timeout_s=s.action_outbox_close_timeout_s)
        outbox.start()
        self._durable_sinks[path] = DurableSink.for_config(outbox, config)
        return self._durable_sinks[path]

    async def release_unused(self, in_use: Iterable[LoadedPipeline]) -> None:
        """Frees the pipelines not in ``in_use`` (a model shared by several displays stays while one uses it)."""
        used = {pipeline.archive.sha256 for pipeline in in_use}
        for sha in [sha for sha in self._by_sha if sha not in used]:
            pipeline = self._by_sha.pop(sha)
            await asyncio.to_thread(pipeline.engine.close)  # waits for a frame still in flight on it
            self.store.release(sha)
            if not isinstance(pipeline.sink, DurableSink) and all(
                    p.sink is not pipeline.sink for p in self._by_sha.values()):
                await pipeline.sink.close()
            log.info("model freed", extra={"sha256": sha[:12]})

    async def close(self) -> None:
        """Idempotent. A durable sink first gives its queue ``close_timeout_s`` to drain."""
        pipelines, self._by_sha, self._durable_sinks = list(self._by_sha.values()), {}, {}
        for pipeline in pipelines:
            pipeline.engine.close()
        for sink in {id(pipeline.sink): pipeline.sink for pipeline in pipelines}.values():
            await sink.close()
