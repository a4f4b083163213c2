"""Removing what a test or bench run wrote to the real Redis."""

from __future__ import annotations

import redis


def delete_keys(redis_url: str, pattern: str) -> int:
    """Delete every key matching ``pattern`` (``inference:<display>:*``); how many there were."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()
