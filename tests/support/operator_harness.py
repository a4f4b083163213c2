"""The real Kopf operator run inside a test, and a stand-in for camera pods' /healthz.

Kopf must run in the test's own task: on stop it cancels every task created after it started
(kopf's running.py), which would include a fixture's teardown task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import kopf
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from kubernetes import client as k8s

from detector.contract.pods import PodHealth, StreamReport
from detector_operator import handlers
from detector_operator.manifests import PodDefaults
from detector_operator.rolling import RollBudget
from tests.support.servers import free_port


class HealthEndpoint:
    """Stands in for camera pods' /healthz (every pod IP is 127.0.0.1 in these tests); ``health`` is settable."""

    def __init__(self) -> None:
        self.health = PodHealth(ok=True, detail="frames flowing", report=StreamReport(
            online=True, state="streaming", fps=9.87, last_frame_at=1_764_000_000.0, frames=100, reconnects=0,
            last_error=None, http_port=8080))
        app = FastAPI()
        app.get("/healthz")(lambda: JSONResponse(self.health.model_dump(mode="json"),
                                                 status_code=200 if self.health.ok else 503))
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    lifespan="off"))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[HealthEndpoint]:
        task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        try:
            yield self
        finally:
            self.server.should_exit = True
            await task


@contextlib.asynccontextmanager
async def running_operator(url: str, core: k8s.CoreV1Api, defaults: PodDefaults, *, namespace: str,
                           pod_http_port: int, status_interval_s: float,
                           event_level: int | None = None, rolls: RollBudget | None = None) -> AsyncIterator[None]:
    """The operator's handlers under real Kopf against ``url``; ``event_level``: post Kubernetes events of
    Kopf's per-object log records from that level (None: no events)."""
    registry = kopf.OperatorRegistry()
    handlers.register(registry, status_interval_s=status_interval_s)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # kmock answers 500 to a cluster-wide namespace list
    if event_level is None:
        settings.posting.enabled = False
    else:
        settings.posting.level = event_level
    async with httpx.AsyncClient(timeout=2) as http:
        context = handlers.OperatorContext(core, defaults, http, pod_http_port=pod_http_port,
                                           rolls=rolls or RollBudget(), namespace=namespace)
        stop = asyncio.Event()
        operator = asyncio.create_task(kopf.operator(
            registry=registry, namespaces=[namespace], standalone=True, settings=settings, stop_flag=stop,
            memo=kopf.Memo(context=context)))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait({operator}, timeout=20)  # Kopf ends its own task cancelled: do not await it
    assert operator.done(), "the operator did not stop"
