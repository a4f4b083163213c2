"""The ActionSink of production: Redis and PostgreSQL from pipeline.json, connected once per archive."""

from __future__ import annotations

from collections.abc import Mapping

from camera_pod.actions.postgres import PostgresWriter
from camera_pod.actions.redis_writer import RedisWriter
from camera_pod.mpta.schema import PipelineConfig
from detector.kit.errors import PermanentError


class ServiceNotConfigured(PermanentError):
    pass


class ServiceSink:
    def __init__(self, config: PipelineConfig, *, client_name: str = "camera-detector",
                 client_retries: bool = True) -> None:
        """``client_name`` labels the connections (Redis CLIENT LIST, pg_stat_activity) for operators;
        ``client_retries=False`` lets a connection error through at once (for a caller that retries itself)."""
        self._redis = RedisWriter(config.redis, client_name=client_name, client_retries=client_retries) \
            if config.redis else None
        self._postgres = PostgresWriter(config.postgresql, application_name=client_name) if config.postgresql else None

    async def close(self) -> None:
        if self._redis:
            await self._redis.close()
        if self._postgres:
            await self._postgres.close()

    def _redis_writer(self) -> RedisWriter:
        if self._redis is None:
            raise ServiceNotConfigured("pipeline.json has no \"redis\" section")
        return self._redis

    def _postgres_writer(self) -> PostgresWriter:
        if self._postgres is None:
            raise ServiceNotConfigured("pipeline.json has no \"postgresql\" section")
        return self._postgres

    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None:
        await self._redis_writer().save_image(key, data, expire_seconds)

    async def publish(self, channel: str, message: str) -> None:
        await self._redis_writer().publish(channel, message)

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str,
                     fields: Mapping[str, str | None]) -> None:
        await self._postgres_writer().upsert(schema, table, key_field, key_value, fields)

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None:
        await self._postgres_writer().create_initial_record(display_id, captured_timestamp, session_id)
