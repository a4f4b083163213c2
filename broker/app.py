"""The broker's HTTP/WebSocket surface: backend at ``/``, pods at ``/internal/pods/{name}``, images."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from broker import protocol
from broker.service import Broker
from detector.contract.pods import POD_MESSAGE, Ack, DetectionEvent

log = logging.getLogger(__name__)


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(message)'}: {e['msg']}"
                     for e in error.errors(include_url=False))[:1000]


def build_app(broker: Broker) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await broker.restore()  # before serving: a restarted broker knows its cameras before the backend asks
        tasks = [asyncio.create_task(broker.heartbeat()), asyncio.create_task(broker.watch_grace())]
        broker.backend_lost_at = time.monotonic()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await broker.runner.close()

    app = FastAPI(title="camera-detector broker", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.websocket("/")
    async def backend(socket: WebSocket) -> None:
        await socket.accept()
        previous, broker.backend = broker.backend, socket
        broker.backend_lost_at = None
        if previous is not None:
            log.info("a new backend connection replaces the old one")
            with contextlib.suppress(Exception):
                await previous.close(code=1012)
        log.info("backend connected", extra={"client": str(socket.client)})
        await broker.send(broker.state_report().to_wire())
        await broker.flush_undelivered()
        try:
            while True:
                raw = await socket.receive_text()
                try:
                    await _handle_backend_text(broker, raw)
                except Exception:  # the last line of defence: one message never ends the connection
                    log.exception("unexpected failure on a backend message; ignored")
        except WebSocketDisconnect:
            pass
        finally:
            if broker.backend is socket:
                broker.backend = None
                broker.backend_lost_at = time.monotonic()
                log.warning("backend disconnected; cameras keep running for the grace period",
                            extra={"grace_s": broker.settings.backend_grace_period_sec})

    @app.websocket("/internal/pods/{name}")
    async def pod(socket: WebSocket, name: str) -> None:
        await socket.accept()
        link = broker.pods.attach(name, socket)
        try:
            while True:
                raw = await socket.receive_text()
                try:
                    message = POD_MESSAGE.validate_json(raw)
                except ValidationError as exc:
                    log.error("bad message from pod", extra={"pod": name, "error": _describe(exc)})
                    continue
                if isinstance(message, DetectionEvent):
                    await broker.on_event(message)
                    await socket.send_text(Ack(ids=[message.id]).model_dump_json())
                else:
                    broker.pods.update(link, message)
        except WebSocketDisconnect:
            pass
        finally:
            broker.pods.detach(link)

    @app.get("/camera/{identifier}/image")
    async def camera_image(identifier: str) -> Response:
        pod_name = broker.pod_of(identifier)
        try:
            url = await broker.runner.image_url(pod_name, broker.pods.status(pod_name)) if pod_name else None
        except Exception as exc:  # the runner cannot tell where the pod is (e.g. the API server is down)
            log.warning("camera pod address unknown", extra={"pod": pod_name, "error": type(exc).__name__})
            return JSONResponse({"error": f"camera pod unreachable: {type(exc).__name__}"}, status_code=503)
        if url is None:
            return JSONResponse({"error": f"unknown subscription or no frame yet: {identifier}"}, status_code=404)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                upstream = await client.get(url)
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"camera pod unreachable: {type(exc).__name__}"}, status_code=503)
        if upstream.status_code != 200:
            return JSONResponse({"error": "no frame yet"}, status_code=404)
        return Response(upstream.content, media_type="image/jpeg")

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"ok": True, "backend": broker.backend is not None, "pods": len(broker.runner.running())}

    return app


async def _handle_backend_text(broker: Broker, raw: str) -> None:
    if len(raw.encode()) > broker.settings.max_message_bytes:
        log.error("backend message too large; ignored", extra={"bytes": len(raw.encode()),
                                                               "limit": broker.settings.max_message_bytes})
        return
    try:
        message = protocol.BACKEND_MESSAGE.validate_json(raw)
    except ValidationError as exc:
        kind = _message_type(raw)
        log.error("invalid backend message; ignored", extra={"type": kind, "error": _describe(exc)})
        return
    try:
        await broker.handle(message)
    except Exception:  # one message must never take the connection down
        log.exception("handling a backend message failed", extra={"type": message.type})


def _message_type(raw: str) -> str:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return "(not JSON)"
    return str(document.get("type"))[:64] if isinstance(document, dict) else f"({type(document).__name__})"
