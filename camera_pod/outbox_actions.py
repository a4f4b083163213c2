"""Nothing lost: pipeline writes go through a durable outbox and are applied when their service is up.

``DurableSink`` is the pipeline's ``ActionSink``: each write is committed to the local SQLite queue
(``outbox_store``) and the call returns at once, so a down Redis or PostgreSQL never slows a camera
and never loses a write. One drainer task per service applies the queue through the real writers:

- **Order.** A service's writes are applied one at a time in the order they were accepted, so writes
  to one key (an image key, a channel, a table row) land in order; a later upsert of a row always
  wins over an earlier one.
- **Outages.** A connection error or timeout leaves the write at the head of its queue and backs the
  service off exponentially (0.5 s doubling to ``max_backoff_s``, full jitter). Redis and PostgreSQL
  have separate drainers: one down does not hold back the other.
- **Idempotency.** A write is deleted only after it succeeded, so a crash in between applies it
  again: SET of an image key and ``INSERT … ON CONFLICT DO UPDATE`` (upsert) give the same result
  twice, the initial record is ``ON CONFLICT (session_id) DO NOTHING``. A publish is at-least-once:
  a retried one may be delivered twice and subscribers must tolerate that (the message format is the
  archive's template, which this code does not change).
- **Dead letters.** Any other error (bad SQL, a missing table, no such service in pipeline.json) will
  not heal by retrying: the write moves to the ``dead`` table with its error, counted and logged.
- **Expiry.** An image is saved with what is left of its TTL; one that would already have expired is
  dropped (counted, ``reason="expired"``) instead of being written late.
- **Bound.** ``max_items`` / ``max_bytes``: past them the oldest images go first, then the oldest
  writes of any kind; every drop is counted by kind and logged.

On close the drainers get ``close_timeout_s`` to finish; what is left stays on disk and is applied by
the next pod that opens the same file (``outbox_path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg
import psycopg_pool
import redis.exceptions

from camera_pod.actions.services import ServiceNotConfigured
from camera_pod.metrics import PodMetrics
from camera_pod.mpta.schema import PipelineConfig
from camera_pod.outbox_store import SERVICES, Dropped, Item, OutboxStore, Service
from camera_pod.pipeline.sink import ActionSink
from detector.kit.errors import TemporaryError

log = logging.getLogger(__name__)

TEMPORARY_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, psycopg.OperationalError,
                    psycopg_pool.PoolTimeout, OSError, TimeoutError, TemporaryError)


def is_temporary(exc: BaseException) -> bool:
    """Errors that retrying can heal: the service is unreachable, restarting, or too slow right now."""
    return isinstance(exc, TEMPORARY_ERRORS)


def outbox_path(state_dir: Path, pod_name: str, config: PipelineConfig) -> Path:
    """One file per pod and per set of services (the queued writes are only valid for those services)."""
    parts = [f"{c.host}:{c.port}/{c.db}" if (c := config.redis) else "-",
             f"{p.username}@{p.host}:{p.port}/{p.database}" if (p := config.postgresql) else "-"]
    target = hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
    return state_dir / f"{pod_name}-{target}.sqlite3"


class ActionOutbox:
    """The durable queue plus its drainers, applying writes through ``writer`` (a ``ServiceSink``)."""

    def __init__(self, store: OutboxStore, writer: ActionSink, *, metrics: PodMetrics | None = None,
                 min_backoff_s: float = 0.5, max_backoff_s: float = 30.0, close_timeout_s: float = 5.0) -> None:
        self.store = store
        self.writer = writer
        self.metrics = metrics or PodMetrics()
        self.target = store.path.stem
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.close_timeout_s = close_timeout_s
        self._wakeup = {service: asyncio.Event() for service in SERVICES}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._drain(service), name=f"outbox-{service}")
                           for service in SERVICES]
        self._refresh_gauges()

    async def enqueue(self, service: Service, key: str, kind: str, args: Mapping[str, object],
                      data: bytes | None = None) -> None:
        dropped = await asyncio.to_thread(self.store.enqueue, service, key, kind, args, data)
        self._count_drops(dropped, "bound")
        self._refresh_gauges()
        self._wakeup[service].set()

    def _count_drops(self, dropped: list[Dropped], reason: str) -> None:
        for drop in dropped:
            self.metrics.outbox_dropped.labels(drop.kind, reason).inc(drop.count)
            what = "full: dropped the oldest writes" if reason == "bound" else "dropped an image past its TTL"
            log.warning(f"action outbox {what}",
                        extra={"outbox": self.target, "kind": drop.kind, "count": drop.count, "reason": reason})

    def _refresh_gauges(self) -> None:
        for service, (count, age) in self.store.stats().items():
            self.metrics.outbox_items.labels(self.target, service).set(count)
            self.metrics.outbox_oldest_seconds.labels(self.target, service).set(age)

    async def close(self) -> None:
        """Give the drainers ``close_timeout_s`` to empty the queue, then stop; the rest stays on disk."""
        if self._tasks:
            deadline = time.monotonic() + self.close_timeout_s
            while time.monotonic() < deadline and any(self.store.stats()[s][0] for s in SERVICES):
                await asyncio.sleep(0.05)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        await asyncio.to_thread(self.store.close)  # closing twice is harmless

    # ---- draining -------------------------------------------------------------------------------

    async def _drain(self, service: Service) -> None:
        while True:
            try:
                await self._drain_until_broken(service)
            except Exception:  # the local queue itself failed (disk full?): log, wait, carry on
                log.exception("action outbox: drainer failed; restarting", extra={"outbox": self.target,
                                                                                 "service": service})
                await asyncio.sleep(self.max_backoff_s)

    async def _drain_until_broken(self, service: Service) -> None:
        failures = 0
        while True:
            items = await asyncio.to_thread(self.store.head, service)
            if not items:
                self._wakeup[service].clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup[service].wait(), 1.0)
                continue
            error = await self._apply_all(service, items)
            self._refresh_gauges()
            if error is None:
                if failures:
                    log.info("action outbox: service back, writes applied", extra={"outbox": self.target,
                                                                                   "service": service})
                failures = 0
                continue
            if not failures:  # once per outage, not once per retry
                log.warning("action outbox: service unavailable, writes kept and retried",
                            extra={"outbox": self.target, "service": service, "error": error})
            failures += 1
            delay = min(self.max_backoff_s, self.min_backoff_s * 2 ** (failures - 1))
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _apply_all(self, service: Service, items: list[Item]) -> str | None:
        """Apply in order; stop at the first temporary failure and return its error (the caller backs off)."""
        for item in items:
            try:
                applied = await self._apply(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if is_temporary(exc):
                    await asyncio.to_thread(self.store.record_attempt, item.id)
                    self.metrics.outbox_retries.labels(service).inc()
                    return error
                await asyncio.to_thread(self.store.bury, item, error)
                self.metrics.outbox_dead.labels(item.kind).inc()
                log.error("action outbox: write failed for good, moved to dead letters",
                          extra={"outbox": self.target, "kind": item.kind, "key": item.key, "error": error})
                continue
            await asyncio.to_thread(self.store.delete, item.id)
            if applied:
                self.metrics.outbox_applied.labels(item.kind).inc()
            else:
                self._count_drops([Dropped(item.kind, 1)], "expired")
        return None

    async def _apply(self, item: Item) -> bool:
        """Apply one write; False when it was an image past its TTL (not written)."""
        args = item.args
        if item.kind == "save_image":
            ttl = args.get("expire_seconds")
            expire = math.ceil(item.created_at + ttl - time.time()) if isinstance(ttl, int) else None
            if expire is not None and expire <= 0:
                return False
            await self.writer.save_image(str(args["key"]), item.data or b"", expire)
        elif item.kind == "publish":
            await self.writer.publish(str(args["channel"]), str(args["message"]))
        elif item.kind == "upsert":
            fields = args["fields"]
            assert isinstance(fields, dict)
            await self.writer.upsert(str(args["schema"]), str(args["table"]), str(args["key_field"]),
                                     str(args["key_value"]), fields)
        elif item.kind == "create_initial_record":
            await self.writer.create_initial_record(str(args["display_id"]), str(args["captured_timestamp"]),
                                                    str(args["session_id"]))
        else:
            raise ValueError(f"unknown outbox write kind {item.kind!r}")
        return True


class DurableSink:
    """The ``ActionSink`` that queues: every write is on disk when the call returns, applied later."""

    queues_writes = True

    def __init__(self, outbox: ActionOutbox, *, configured: frozenset[Service] = frozenset(SERVICES)) -> None:
        """``configured``: the services pipeline.json names; a write to another fails at once, as before."""
        self.outbox = outbox
        self.configured = configured

    @classmethod
    def for_config(cls, outbox: ActionOutbox, config: PipelineConfig) -> DurableSink:
        configured = {"redis"} if config.redis else set()
        if config.postgresql:
            configured.add("postgres")
        return cls(outbox, configured=frozenset(configured))  # type: ignore[arg-type]

    async def _enqueue(self, service: Service, key: str, kind: str, args: Mapping[str, object],
                       data: bytes | None = None) -> None:
        if service not in self.configured:
            section = "redis" if service == "redis" else "postgresql"
            raise ServiceNotConfigured(f"pipeline.json has no \"{section}\" section")
        await self.outbox.enqueue(service, key, kind, args, data)

    async def close(self) -> None:
        await self.outbox.close()
        close = getattr(self.outbox.writer, "close", None)
        if close is not None:
            await close()

    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None:
        await self._enqueue("redis", key, "save_image", {"key": key, "expire_seconds": expire_seconds}, data)

    async def publish(self, channel: str, message: str) -> None:
        await self._enqueue("redis", channel, "publish", {"channel": channel, "message": message})

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str,
                     fields: Mapping[str, str | None]) -> None:
        await self._enqueue("postgres", f"{schema}.{table}[{key_value}]", "upsert", {
            "schema": schema, "table": table, "key_field": key_field, "key_value": key_value, "fields": dict(fields)})

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None:
        await self._enqueue("postgres", f"initial[{session_id}]", "create_initial_record", {
            "display_id": display_id, "captured_timestamp": captured_timestamp, "session_id": session_id})
