"""The action outbox's queue logic: order, bound, dead letters, expiry, durability.

Writes go to real, throwaway Redis and PostgreSQL servers (stopped for real when a test needs them down);
the writer only records which writes succeeded, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import redis.exceptions

from camera_pod.actions.services import ServiceSink
from camera_pod.metrics import PodMetrics
from camera_pod.outbox_actions import ActionOutbox, DurableSink, is_temporary
from camera_pod.outbox_store import OutboxStore
from camera_pod.pipeline.sink import queues_writes
from tests.camera_pod.test_action_outbox_services import services_config
from tests.support.throwaway_services import ThrowawayPostgres, ThrowawayRedis, throwaway_postgres, throwaway_redis


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ThrowawayRedis, ThrowawayPostgres]]:
    with throwaway_redis() as redis_server, throwaway_postgres() as postgres_server:
        with psycopg.connect(postgres_server.dsn, autocommit=True) as connection:
            connection.execute("CREATE SCHEMA s")
            connection.execute("CREATE TABLE s.t (id text PRIMARY KEY, n text, a text)")
            connection.execute("CREATE TABLE s.cars (session_id text PRIMARY KEY, car_brand text)")
        yield redis_server, postgres_server


class RecordingWriter:
    """The real ServiceSink on throwaway Redis/PostgreSQL servers; each write that succeeded is recorded.

    ``down = True`` stops the servers for real; ``down = False`` starts them again.
    """

    def __init__(self, servers: tuple[ThrowawayRedis, ThrowawayPostgres], pipeline: dict[str, Any]) -> None:
        self.redis_server, self.postgres_server = servers
        config = services_config(pipeline, redis_port=self.redis_server.port,
                                 postgres_port=self.postgres_server.port)
        self.sink = ServiceSink(config, client_name="test-outbox-unit", client_retries=False)
        self.calls: list[tuple[object, ...]] = []
        self._down = False

    @property
    def down(self) -> bool:
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        if value and not self._down:
            self.redis_server.stop()
            self.postgres_server.stop()
        elif not value and self._down:
            self.redis_server.start()
            self.postgres_server.start()
        self._down = value

    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None:
        await self.sink.save_image(key, data, expire_seconds)
        self.calls.append(("save_image", key, data, expire_seconds))

    async def publish(self, channel: str, message: str) -> None:
        await self.sink.publish(channel, message)
        self.calls.append(("publish", channel, message))

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str,
                     fields: Mapping[str, str | None]) -> None:
        await self.sink.upsert(schema, table, key_field, key_value, fields)
        self.calls.append(("upsert", table, key_value, dict(fields)))

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None:
        await self.sink.create_initial_record(display_id, captured_timestamp, session_id)
        self.calls.append(("create_initial_record", session_id))

    def stored(self, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
        """What the real PostgreSQL server holds (not what the writer believes it wrote)."""
        with psycopg.connect(self.postgres_server.dsn, autocommit=True) as connection:
            return connection.execute(sql, parameters).fetchall()

    def redis_value(self, key: str) -> bytes | None:
        client = redis.Redis(host="127.0.0.1", port=self.redis_server.port)
        try:
            return client.get(key)  # type: ignore[return-value]
        finally:
            client.close()


@pytest.fixture
async def writer(servers: tuple[ThrowawayRedis, ThrowawayPostgres],
                 fixture_pipeline: dict[str, Any]) -> AsyncIterator[RecordingWriter]:
    recording = RecordingWriter(servers, fixture_pipeline)
    yield recording
    recording.down = False
    await recording.sink.close()


def store(tmp_path: Path, **bounds: int) -> OutboxStore:
    return OutboxStore(tmp_path / "outbox" / "pod.sqlite3", max_items=bounds.get("max_items", 1000),
                       max_bytes=bounds.get("max_bytes", 1 << 20))


async def wait_for(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def counter(metrics: PodMetrics, name: str, labels: dict[str, str]) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_writes_are_applied_in_order_and_deleted(tmp_path: Path, writer: RecordingWriter) -> None:
    metrics = PodMetrics()
    outbox = ActionOutbox(store(tmp_path), writer, metrics=metrics)
    sink = DurableSink(outbox)
    assert queues_writes(sink)
    outbox.start()
    for n in range(20):
        await sink.upsert("s", "t", "id", "row-1", {"n": str(n)})
        await sink.save_image(f"img:{n}", b"x" * n, None)
    await sink.publish("ch", "hello")
    await wait_for(lambda: len(writer.calls) == 41)
    upserts = [call[3] for call in writer.calls if call[0] == "upsert"]
    assert upserts == [{"n": str(n)} for n in range(20)]
    assert [call[1] for call in writer.calls if call[0] == "save_image"] == [f"img:{n}" for n in range(20)]
    await outbox.close()
    assert writer.stored("SELECT n FROM s.t WHERE id = %s", "row-1") == [("19",)]  # the last upsert won
    assert writer.redis_value("img:19") == b"x" * 19
    assert counter(metrics, "detector_action_outbox_applied_total", {"kind": "upsert"}) == 20
    assert counter(metrics, "detector_action_outbox_items", {"outbox": "pod", "service": "postgres"}) == 0


async def test_a_down_service_is_retried_and_does_not_block_the_other(tmp_path: Path, writer: RecordingWriter) -> None:
    metrics = PodMetrics()
    outbox = ActionOutbox(store(tmp_path), writer, metrics=metrics, min_backoff_s=0.05, max_backoff_s=0.1)
    outbox.start()
    writer.down = True
    await outbox.enqueue("redis", "k", "publish", {"channel": "ch", "message": "m1"})
    await asyncio.sleep(0.3)
    assert writer.calls == []
    assert counter(metrics, "detector_action_outbox_retries_total", {"service": "redis"}) >= 2
    assert counter(metrics, "detector_action_outbox_items", {"outbox": "pod", "service": "redis"}) == 1
    assert counter(metrics, "detector_action_outbox_oldest_seconds", {"outbox": "pod", "service": "redis"}) > 0
    writer.down = False
    await wait_for(lambda: writer.calls == [("publish", "ch", "m1")])
    await outbox.close()


async def test_the_bound_drops_oldest_images_first_and_counts_them(tmp_path: Path, writer: RecordingWriter) -> None:
    metrics = PodMetrics()
    outbox = ActionOutbox(store(tmp_path, max_items=5), writer, metrics=metrics)  # not started: nothing drains
    for n in range(3):
        await outbox.enqueue("redis", f"img:{n}", "save_image", {"key": f"img:{n}", "expire_seconds": None}, b"j")
    for n in range(4):
        await outbox.enqueue("redis", "ch", "publish", {"channel": "ch", "message": str(n)})
    kept = [(item.kind, item.key) for item in outbox.store.head("redis")]
    assert kept == [("save_image", "img:2"), *[("publish", "ch")] * 4]
    assert counter(metrics, "detector_action_outbox_dropped_total", {"kind": "save_image", "reason": "bound"}) == 2
    await outbox.enqueue("redis", "ch", "publish", {"channel": "ch", "message": "4"})
    await outbox.enqueue("redis", "ch", "publish", {"channel": "ch", "message": "5"})
    messages = [item.args["message"] for item in outbox.store.head("redis")]
    assert messages == ["1", "2", "3", "4", "5"]  # no image left: the oldest of any kind went
    assert counter(metrics, "detector_action_outbox_dropped_total", {"kind": "publish", "reason": "bound"}) == 1
    await outbox.close()


async def test_the_byte_bound_drops_images(tmp_path: Path, writer: RecordingWriter) -> None:
    outbox = ActionOutbox(store(tmp_path, max_bytes=10_000), writer)
    for n in range(5):
        await outbox.enqueue("redis", f"img:{n}", "save_image", {"key": f"img:{n}", "expire_seconds": None},
                             b"j" * 3000)
    assert [item.key for item in outbox.store.head("redis")] == ["img:2", "img:3", "img:4"]
    await outbox.close()


async def test_permanent_errors_go_to_dead_letters_and_the_rest_continues(
        tmp_path: Path, writer: RecordingWriter) -> None:
    metrics = PodMetrics()
    outbox = ActionOutbox(store(tmp_path), writer, metrics=metrics)
    sink = DurableSink(outbox)
    outbox.start()
    await sink.upsert("s", "missing", "id", "1", {"a": "b"})
    await sink.upsert("s", "t", "id", "2", {"a": "c"})
    await wait_for(lambda: len(writer.calls) == 1)
    assert writer.calls == [("upsert", "t", "2", {"a": "c"})]
    [(item, error)] = outbox.store.dead()
    assert item.kind == "upsert" and item.args["table"] == "missing" and "UndefinedTable" in error
    assert counter(metrics, "detector_action_outbox_dead_total", {"kind": "upsert"}) == 1
    await outbox.close()


async def test_expired_images_are_dropped_and_live_ones_keep_their_remaining_ttl(
        tmp_path: Path, writer: RecordingWriter) -> None:
    metrics = PodMetrics()
    outbox = ActionOutbox(store(tmp_path), writer, metrics=metrics)
    now = time.time()
    outbox.store.enqueue("redis", "old", "save_image", {"key": "old", "expire_seconds": 60}, b"o", now=now - 120)
    outbox.store.enqueue("redis", "new", "save_image", {"key": "new", "expire_seconds": 60}, b"n", now=now - 10)
    outbox.start()
    await wait_for(lambda: len(writer.calls) == 1)
    [(_, key, _, ttl)] = writer.calls
    assert key == "new" and 49 <= ttl <= 51  # type: ignore[operator]
    assert counter(metrics, "detector_action_outbox_dropped_total", {"kind": "save_image", "reason": "expired"}) == 1
    await outbox.close()


async def test_queued_writes_survive_a_restart(tmp_path: Path, writer: RecordingWriter) -> None:
    writer.down = True
    first = ActionOutbox(store(tmp_path), writer, min_backoff_s=0.05, close_timeout_s=0.2)
    first.start()
    await DurableSink(first).create_initial_record("d", "ts", "session-1")
    await DurableSink(first).upsert("s", "cars", "session_id", "session-1", {"car_brand": "Ford"})
    await first.close()  # the pod stops while the service is down
    writer.down = False
    second = ActionOutbox(store(tmp_path), writer)
    second.start()
    await wait_for(lambda: len(writer.calls) == 2)
    assert writer.calls == [("create_initial_record", "session-1"),
                            ("upsert", "cars", "session-1", {"car_brand": "Ford"})]
    assert writer.stored("SELECT car_brand FROM s.cars WHERE session_id = %s", "session-1") == [("Ford",)]
    await second.close()


async def test_a_service_missing_from_pipeline_json_fails_at_once(tmp_path: Path, writer: RecordingWriter) -> None:
    outbox = ActionOutbox(store(tmp_path), writer)
    sink = DurableSink(outbox, configured=frozenset({"postgres"}))
    with pytest.raises(Exception, match='no "redis" section'):
        await sink.publish("ch", "m")
    await outbox.close()


@pytest.mark.parametrize(("error", "temporary"), [
    (redis.exceptions.ConnectionError("refused"), True),
    (redis.exceptions.TimeoutError("slow"), True),
    (psycopg.OperationalError("server closed the connection"), True),
    (ConnectionRefusedError(), True),
    (psycopg.errors.UndefinedTable("no table"), False),
    (redis.exceptions.ResponseError("WRONGTYPE"), False),
    (ValueError("bad"), False),
])
def test_error_classification(error: Exception, temporary: bool) -> None:
    assert is_temporary(error) is temporary
