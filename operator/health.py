"""Reads a camera pod's ``/healthz`` (fps, last frame, last error) for the resource's status."""

from __future__ import annotations

import httpx
from pydantic import ValidationError

from detector.contract.pods import PodHealth


async def read_health(client: httpx.AsyncClient, ip: str, port: int) -> tuple[PodHealth | None, str | None]:
    """The pod's health, or why it could not be read (both 200 and 503 carry a report)."""
    try:
        response = await client.get(f"http://{ip}:{port}/healthz")
    except httpx.HTTPError as exc:
        return None, f"health endpoint unreachable: {type(exc).__name__}"
    try:
        return PodHealth.model_validate_json(response.content), None
    except ValidationError:
        return None, f"health endpoint answered {response.status_code} without a health report"
