"""The only door from the engine to the outside world."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


def queues_writes(sink: object) -> bool:
    """A sink that accepts writes for later delivery (a durable outbox): its outcomes are "queued", not "done"."""
    return getattr(sink, "queues_writes", False) is True


class ActionSink(Protocol):
    async def save_image(self, key: str, data: bytes, expire_seconds: int | None) -> None: ...

    async def publish(self, channel: str, message: str) -> None: ...

    async def upsert(self, schema: str, table: str, key_field: str, key_value: str,
                     fields: Mapping[str, str | None]) -> None: ...  # None: NULL

    async def create_initial_record(self, display_id: str, captured_timestamp: str, session_id: str) -> None: ...
