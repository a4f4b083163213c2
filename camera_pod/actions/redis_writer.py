"""Redis writes through redis-py asyncio, one client per archive."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from camera_pod.mpta.schema import RedisConfig

CLIENT_NAME = "camera-detector"


class RedisWriter:
    def __init__(self, config: RedisConfig, *, timeout_s: float = 5.0, client_name: str = CLIENT_NAME,
                 client_retries: bool = True) -> None:
        """``client_retries=False``: fail at the first connection error (the action outbox retries on its own,
        with backoff, instead of redis-py's few retries that hold a down service's attempt for seconds)."""
        self._client = Redis(host=config.host, port=config.port, db=config.db, password=config.password,
                             socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30,
                             client_name=client_name)
        if not client_retries:
            self._client.set_retry(Retry(NoBackoff(), 0))

    async def close(self) -> None:
        await self._client.aclose()

    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None:
        await self._client.set(key, data, ex=expire_seconds)

    async def publish(self, channel: str, message: str) -> None:
        await self._client.publish(channel, message)
