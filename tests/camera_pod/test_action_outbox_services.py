"""The action outbox against real, throwaway Redis and PostgreSQL servers that are stopped and restarted.

Never the shared services: each test starts its own on a free loopback port (tests/support/throwaway_services.py).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from camera_pod.actions.services import ServiceSink
from camera_pod.metrics import PodMetrics
from camera_pod.mpta.schema import PipelineConfig
from camera_pod.outbox_actions import ActionOutbox, DurableSink, outbox_path
from camera_pod.outbox_store import OutboxStore
from camera_pod.runtime import CameraPod
from camera_pod.settings import PodSettings
from detector.contract.pods import DisplaySubscription, PodSpec, StreamSpec
from tests.support.throwaway_services import ThrowawayPostgres, ThrowawayRedis, throwaway_postgres, throwaway_redis

OUTAGE_S = 2.0


def services_config(pipeline: dict[str, Any], *, redis_port: int | None = None,
                    postgres_port: int | None = None) -> PipelineConfig:
    document = copy.deepcopy(pipeline)
    document["redis"] = {"host": "127.0.0.1", "port": redis_port} if redis_port else None
    document["postgresql"] = {"host": "127.0.0.1", "port": postgres_port, "database": "postgres",
                              "username": "postgres"} if postgres_port else None
    return PipelineConfig.model_validate(document)


def open_sink(tmp_path: Path, config: PipelineConfig, metrics: PodMetrics, **options: float) -> DurableSink:
    store = OutboxStore(outbox_path(tmp_path, "pod-1", config), max_items=10_000, max_bytes=64 << 20)
    writer = ServiceSink(config, client_name="test-outbox", client_retries=False)
    outbox = ActionOutbox(store, writer, metrics=metrics, min_backoff_s=options.get("min_backoff_s", 0.1),
                          max_backoff_s=options.get("max_backoff_s", 0.5),
                          close_timeout_s=options.get("close_timeout_s", 5.0))
    outbox.start()
    return DurableSink.for_config(outbox, config)


def depth(metrics: PodMetrics, service: str) -> float:
    samples = [sample for family in metrics.registry.collect() if family.name == "detector_action_outbox_items"
               for sample in family.samples if sample.labels["service"] == service]
    return sum(sample.value for sample in samples)


def sample(metrics: PodMetrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def redis_outage(server: ThrowawayRedis, sink: DurableSink, metrics: PodMetrics, outage_s: float,
                       count: int) -> list[str]:
    """Stop Redis, queue ``count`` images + messages, restart it; returns the messages a subscriber saw."""
    server.stop()
    for n in range(count):
        await sink.save_image(f"img:{n}", f"jpeg-{n}".encode(), 600)
        await sink.save_image("img:latest", str(n).encode(), 600)
        await sink.publish("events", str(n))
    await asyncio.sleep(outage_s)
    assert depth(metrics, "redis") == 3 * count
    assert sample(metrics, "detector_action_outbox_retries_total", {"service": "redis"}) >= 1
    server.start(tcp=False)  # subscribe before the outbox can reach it, then open the port
    subscriber = redis.Redis(unix_socket_path=str(server.socket_path)).pubsub()
    subscriber.subscribe("events")
    assert subscriber.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    server.listen()
    await wait_for(lambda: depth(metrics, "redis") == 0)
    received: list[str] = []
    while (message := subscriber.get_message(timeout=0.5)) is not None:
        received.append(message["data"].decode())
    subscriber.close()
    return received


@pytest.mark.slow
async def test_redis_down_then_back_applies_every_write_once_in_order(
        tmp_path: Path, fixture_pipeline: dict[str, Any], outage_s: float = OUTAGE_S) -> None:
    metrics = PodMetrics()
    with throwaway_redis() as server:
        sink = open_sink(tmp_path, services_config(fixture_pipeline, redis_port=server.port), metrics)
        client = redis.Redis(port=server.port)
        try:
            await sink.save_image("img:before", b"before", 600)
            await wait_for(lambda: client.exists("img:before") == 1)
            received = await redis_outage(server, sink, metrics, outage_s, count=30)
            assert received == [str(n) for n in range(30)]  # each once, in order
            assert client.dbsize() == 31  # img:0..29, img:latest (img:before went with the restart: no persistence)
            assert [client.get(f"img:{n}") for n in range(30)] == [f"jpeg-{n}".encode() for n in range(30)]
            assert client.get("img:latest") == b"29"  # the last SET of the key won
            assert 590 <= client.ttl("img:0") <= 600
        finally:
            await sink.close()
            client.close()


def _rows(server: ThrowawayPostgres) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.dsn) as connection:
        return connection.execute("SELECT id, brand, n FROM public.cars ORDER BY id").fetchall()


@pytest.mark.slow
async def test_postgres_down_during_upserts_keeps_the_latest_values(
        tmp_path: Path, fixture_pipeline: dict[str, Any], outage_s: float = OUTAGE_S) -> None:
    metrics = PodMetrics()
    with throwaway_postgres() as server:
        with psycopg.connect(server.dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE public.cars (id TEXT PRIMARY KEY, brand TEXT, n TEXT)")
        sink = open_sink(tmp_path, services_config(fixture_pipeline, postgres_port=server.port), metrics)
        try:
            for n in range(5):
                await sink.create_initial_record("display-1", "2026-01-01T00-00-00", f"session-{n}")
                await sink.upsert("public", "cars", "id", f"car-{n}", {"brand": "Ford", "n": "0"})
            await wait_for(lambda: depth(metrics, "postgres") == 0)
            server.stop()
            for round_ in range(1, 4):
                for n in range(5):
                    fields = {"brand": f"brand-{round_}", "n": str(round_)}
                    await sink.upsert("public", "cars", "id", f"car-{n}", fields)
                    await sink.create_initial_record("display-1", "2026-01-01T00-00-00", f"session-{n}")
            await asyncio.sleep(outage_s)
            assert depth(metrics, "postgres") == 30
            server.start()
            await wait_for(lambda: depth(metrics, "postgres") == 0, timeout_s=30)
        finally:
            await sink.close()
        assert _rows(server) == [(f"car-{n}", "brand-3", "3") for n in range(5)]
        with psycopg.connect(server.dsn) as connection:
            sessions = connection.execute("SELECT session_id FROM gas_station_1.car_frontal_info "
                                          "ORDER BY session_id").fetchall()
        assert sessions == [(f"session-{n}",) for n in range(5)]
        assert sample(metrics, "detector_action_outbox_dead_total", {"kind": "upsert"}) == 0


async def test_writes_queued_while_down_are_applied_by_the_next_pod(
        tmp_path: Path, fixture_pipeline: dict[str, Any]) -> None:
    with throwaway_redis() as server:
        config = services_config(fixture_pipeline, redis_port=server.port)
        server.stop()
        first_metrics = PodMetrics()
        first = open_sink(tmp_path, config, first_metrics, close_timeout_s=0.2)
        for n in range(10):
            await first.save_image(f"img:{n}", b"jpeg", 600)
        await first.close()  # the pod restarts while Redis is down: nothing is lost
        server.start()
        second_metrics = PodMetrics()
        second = open_sink(tmp_path, config, second_metrics)
        client = redis.Redis(port=server.port)
        try:
            await wait_for(lambda: client.dbsize() == 10)
            assert sample(second_metrics, "detector_action_outbox_applied_total", {"kind": "save_image"}) == 10
        finally:
            await second.close()
            client.close()


async def test_the_camera_pod_wires_one_durable_sink_per_set_of_services(
        tmp_path: Path, fixture_pipeline: dict[str, Any]) -> None:
    spec = PodSpec(name="cam-0123456789ab", stream=StreamSpec(url="rtsp://127.0.0.1:9/x", kind="rtsp"),
                   subscriptions=[DisplaySubscription(identifier="d;c", model_url="http://127.0.0.1:9/m.mpta",
                                                      model_id=1, model_name="m")],
                   broker_url="ws://127.0.0.1:9/internal/pods/cam-0123456789ab")
    with throwaway_redis() as server:
        config = services_config(fixture_pipeline, redis_port=server.port)
        pod = CameraPod(spec, PodSettings(cache_dir=tmp_path))
        sink = pod.pipelines.sink(config)
        assert isinstance(sink, DurableSink) and pod.pipelines.sink(config) is sink
        assert sink.outbox.store.path.parent == tmp_path / "outbox"
        assert sink.outbox.store.path.name.startswith("cam-0123456789ab-")
        await sink.save_image("img:wired", b"jpeg", 60)
        client = redis.Redis(port=server.port)
        await wait_for(lambda: client.exists("img:wired") == 1)
        client.close()
        await sink.close()
        direct = CameraPod(spec, PodSettings(cache_dir=tmp_path, action_outbox=False)).pipelines.sink(config)
        assert isinstance(direct, ServiceSink)
        await direct.close()
