"""Redis writes through redis-py asyncio, one client per archive."""

from __future__ import annotations

from redis.asyncio import Redis

from camera_pod.mpta.schema import RedisConfig

CLIENT_NAME = "camera-detector"


class RedisWriter:
    def __init__(self, config: RedisConfig, *, timeout_s: float = 5.0, client_name: str = CLIENT_NAME) -> None:
        self._client = Redis(host=config.host, port=config.port, db=config.db, password=config.password,
                             socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30,
                             client_name=client_name)

    async def close(self) -> None:
        await self._client.aclose()

    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None:
        await self._client.set(key, data, ex=expire_seconds)

    async def publish(self, channel: str, message: str) -> None:
        await self._client.publish(channel, message)
