"""The console: a page served by the broker that shows every subscription live (``GET /console``).

``/console`` is the page, ``/console/state`` one snapshot (``console_state.ConsoleState``), ``/console/events``
the same snapshot as Server-Sent Events every ``PUSH_INTERVAL_S``; its images are the broker's own
``/camera/{identifier}/image``. Plain HTML and ES modules from ``broker/console_assets/`` (package data):
nothing from another site, so it works offline. Behind the broker's token: ``/console?token=...`` once sets
an HttpOnly cookie and redirects to ``/console``, which then opens everything the page loads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from importlib import resources

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse

from broker import auth, console_state
from broker.service import Broker

PUSH_INTERVAL_S = 1.0
# An event stream ends after this long and the browser opens a new one (``retry``): no response lives forever
# (on shutdown ``detector run`` cuts what is left after a few seconds).
STREAM_LIFETIME_S = 60.0
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
LOGIN_PAGE = ("<!doctype html><meta charset=utf-8><title>camera-detector console</title>"
              "<p>This broker needs its token: open <code>/console?token=&lt;DETECTOR_AUTH_TOKEN&gt;</code> once "
              "(a cookie keeps you signed in for this browser session).</p>")


def _asset(name: str) -> bytes:
    return resources.files("broker.console_assets").joinpath(name).read_bytes()


def router(broker: Broker) -> APIRouter:
    routes = APIRouter()

    def refused(request: Request) -> Response | None:
        if auth.refusal(broker.settings.auth_token, request) is None:
            return None
        return JSONResponse({"error": "authentication required"}, status_code=401, headers=auth.CHALLENGE)

    @routes.get("/console", include_in_schema=False)
    async def page(request: Request) -> Response:
        token = broker.settings.auth_token
        if auth.refusal(token, request) is not None:
            return HTMLResponse(LOGIN_PAGE, status_code=401, headers={**HEADERS, **auth.CHALLENGE})
        if token is not None and "token" in request.query_params:  # signed in: the token leaves the address bar
            redirect = RedirectResponse("console", status_code=303, headers=HEADERS)
            auth.set_cookie(redirect, token, secure=request.url.scheme == "https")
            return redirect
        return HTMLResponse(_asset("index.html"), headers=HEADERS)

    @routes.get("/console/state", response_model=console_state.ConsoleState)
    async def state(request: Request) -> Response:
        return refused(request) or Response(console_state.snapshot(broker).model_dump_json(),
                                            media_type="application/json", headers=HEADERS)

    @routes.get("/console/events", include_in_schema=False)
    async def events(request: Request) -> Response:
        return refused(request) or StreamingResponse(
            _snapshots(broker), media_type="text/event-stream", headers={**HEADERS, "X-Accel-Buffering": "no"})

    @routes.get("/console/{name}", include_in_schema=False)
    async def asset(name: str, request: Request) -> Response:
        if name not in ASSETS:
            return JSONResponse({"error": "not found"}, status_code=404)
        return refused(request) or Response(_asset(name), media_type=ASSETS[name], headers=HEADERS)

    return routes


async def _snapshots(broker: Broker) -> AsyncIterator[str]:
    yield f"retry: {round(PUSH_INTERVAL_S * 1000)}\n\n"
    ends = time.monotonic() + STREAM_LIFETIME_S
    while time.monotonic() < ends:
        yield f"event: state\ndata: {console_state.snapshot(broker).model_dump_json()}\n\n"
        await asyncio.sleep(PUSH_INTERVAL_S)
