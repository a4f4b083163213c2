"""The pipeline's writes into the real Redis and PostgreSQL, straight (``ServiceSink``) or through the action outbox
(``DurableSink``: each write kept as JSON on disk until done), for tests that check both ways give the same rows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camera_pod.actions.services import ServiceSink
from camera_pod.metrics import PodMetrics
from camera_pod.mpta.schema import PipelineConfig
from camera_pod.outbox_actions import ActionOutbox, DurableSink, outbox_path
from camera_pod.outbox_store import OutboxStore
from camera_pod.pipeline.sink import ActionSink


@dataclass
class RealSink:
    sink: ActionSink
    store: OutboxStore
    durable: bool

    async def drained(self, timeout_s: float = 20.0) -> list[Any]:
        """Wait until the outbox holds nothing (at once when writing straight); the writes given up on."""
        deadline = time.monotonic() + timeout_s
        while self.durable and any(count for count, _ in self.store.stats().values()):
            assert time.monotonic() < deadline, self.store.stats()
            await asyncio.sleep(0.05)
        return self.store.dead()


@contextlib.asynccontextmanager
async def real_sink(config: PipelineConfig, folder: Path, *, durable: bool,
                    client_name: str) -> AsyncIterator[RealSink]:
    store = OutboxStore(outbox_path(folder, "pod-1", config), max_items=1000, max_bytes=64 << 20)
    writer = ServiceSink(config, client_name=client_name)
    outbox = ActionOutbox(store, writer, metrics=PodMetrics(), min_backoff_s=0.1, max_backoff_s=0.5)
    if durable:
        outbox.start()
    try:
        yield RealSink(DurableSink.for_config(outbox, config) if durable else writer, store, durable)
    finally:
        if durable:
            await outbox.close()  # and the store
        else:
            store.close()
        await writer.close()


class RowRecorder:
    """An action sink that keeps the rows it is given and drops the rest: for tests of what the pipeline would
    write (tests of the writes themselves use ``real_sink``)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str | None]] = []

    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None:
        pass

    async def publish(self, channel: str, message: str) -> None:
        pass

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str,
                     fields: Mapping[str, str | None]) -> None:
        self.rows.append(dict(fields))

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None:
        pass
