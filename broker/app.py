"""The broker's HTTP/WebSocket surface: backend at ``/``, pods at ``/internal/pods/{name}``, images."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
import prometheus_client
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from broker import auth, console, decoding, metrics, protocol
from broker.service import Broker
from detector.contract.pods import POD_MESSAGE, DetectionEvent

log = logging.getLogger(__name__)


def build_app(broker: Broker) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await broker.restore()  # before serving: a restarted broker knows its cameras before the backend asks
        tasks = [asyncio.create_task(broker.heartbeat()), asyncio.create_task(broker.watch_grace()),
                 asyncio.create_task(broker.delivery.run())]
        broker.backend_lost_at = time.monotonic()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await broker.runner.close()

    app = FastAPI(title="camera-detector broker", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(console.router(broker))

    async def refused(socket: WebSocket) -> bool:
        """With a token configured, a WebSocket without it is accepted only to be closed with 1008."""
        reason = auth.refusal(broker.settings.auth_token, socket)
        if reason is not None:
            await socket.accept()
            await socket.close(code=auth.POLICY_VIOLATION, reason=f"authentication required: {reason}")
        return reason is not None

    @app.websocket("/")
    async def backend(socket: WebSocket) -> None:
        if await refused(socket):
            return
        await socket.accept()
        previous = broker.backend
        broker.connect_backend(socket)
        if previous is not None:
            log.info("a new backend connection replaces the old one")
            with contextlib.suppress(Exception):
                await previous.close(code=1012)
        log.info("backend connected", extra={"client": str(socket.client)})
        await broker.send(broker.state_report().to_wire())
        try:
            while True:
                raw = await _receive(socket)
                try:
                    await _handle_backend_text(broker, raw)
                except Exception:  # the last line of defence: one message never ends the connection
                    log.exception("unexpected failure on a backend message; ignored")
        except WebSocketDisconnect:
            pass
        finally:
            if broker.disconnect_backend(socket):
                log.warning("backend disconnected; cameras keep running for the grace period",
                            extra={"grace_s": broker.settings.backend_grace_period_sec})

    @app.websocket("/internal/pods/{name}")
    async def pod(socket: WebSocket, name: str) -> None:
        if await refused(socket):
            return
        await socket.accept()
        link = broker.pods.attach(name, socket)
        await broker.send_displays(link)  # a restarted pod (or broker) ends up with the current displays
        try:
            while True:
                raw = await _receive(socket)
                try:
                    message = POD_MESSAGE.validate_json(raw)
                except ValidationError as exc:
                    log.error("bad message from pod", extra={"pod": name, "error": decoding.describe(exc)})
                    continue
                if isinstance(message, DetectionEvent):
                    await broker.on_event(message, name)
                else:
                    broker.pods.update(link, message)
        except WebSocketDisconnect:
            pass
        finally:
            broker.pods.detach(link)

    @app.get("/camera/{identifier}/image")
    async def camera_image(identifier: str, request: Request) -> Response:
        if auth.refusal(broker.settings.auth_token, request) is not None:
            return JSONResponse({"error": "authentication required"}, status_code=401, headers=auth.CHALLENGE)
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
        return {"ok": True, "backend": broker.backend is not None, "pods": len(broker.runner.running()),
                "refused": len(broker.refusals)}

    @app.get("/refusals")
    async def refusals(request: Request) -> Response:
        """The backend's entries that are refused, and why (identifiers and reasons; never a URL)."""
        if auth.refusal(broker.settings.auth_token, request) is not None:
            return JSONResponse({"error": "authentication required"}, status_code=401, headers=auth.CHALLENGE)
        return JSONResponse([{"subscriptionIdentifier": r.entry, "reason": r.reason, "detail": r.detail,
                              "since": protocol.iso_timestamp(r.at)}
                             for r in sorted(broker.refusals.values(), key=lambda r: r.entry)])

    @app.get("/metrics")
    async def scrape(request: Request) -> Response:
        """Prometheus: the broker's counters and every running camera pod's latest report (token like the rest)."""
        if auth.refusal(broker.settings.auth_token, request) is not None:
            return JSONResponse({"error": "authentication required"}, status_code=401, headers=auth.CHALLENGE)
        return Response(prometheus_client.generate_latest(broker.metrics.registry),
                        media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return app


async def _receive(socket: WebSocket) -> str:
    """The next message as text: a binary frame is read as UTF-8 (undecodable bytes fail validation)."""
    message = await socket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    return text if text is not None else (message.get("bytes") or b"").decode("utf-8", "replace")


async def _handle_backend_text(broker: Broker, raw: str) -> None:
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size > broker.settings.max_message_bytes:
        broker.metrics.refused_messages.labels("too_large").inc()
        log.error("backend message too large; ignored", extra={"type": decoding.peek_type(raw), "bytes": size,
                                                               "limit": broker.settings.max_message_bytes})
        return
    try:
        message = decoding.parse_backend_message(raw)
    except decoding.BadMessage as exc:
        broker.metrics.refused_messages.labels(metrics.message_refusal(exc.kind)).inc()
        log.error("invalid backend message; ignored", extra={"type": exc.kind, "error": exc.detail})
        return
    try:
        await broker.handle(message)
    except Exception:  # one message must never take the connection down
        log.exception("handling a backend message failed", extra={"type": message.type})
