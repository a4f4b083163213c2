"""The pod's link to the broker: a WebSocket that survives broker restarts and resends until acked."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

import websockets
from pydantic import ValidationError

from camera_pod.outbox import EventOutbox
from detector.contract.pods import BROKER_MESSAGE, Ack, Displays, StreamReport
from detector.kit.redaction import redact_text, redact_url

log = logging.getLogger(__name__)


class BrokerChannel:
    def __init__(self, url: str, outbox: EventOutbox, report: Callable[[], StreamReport], *,
                 report_interval_s: float = 1.0, token: str | None = None,
                 on_displays: Callable[[Displays], None] | None = None) -> None:
        self._url = url
        self._on_displays = on_displays
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._outbox = outbox
        self._report = report
        self._report_interval_s = report_interval_s
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """An event was queued: send it now rather than at the next tick."""
        self._wake.set()

    async def run(self) -> None:
        attempt = 0
        while True:
            try:
                async with websockets.connect(self._url, open_timeout=5, ping_interval=10, max_size=1 << 20,
                                              additional_headers=self._headers) as ws:
                    attempt = 0
                    self._outbox.send_all_again()
                    self.connected.set()
                    log.info("connected to broker", extra={"broker": redact_url(self._url)})
                    await asyncio.gather(self._send_loop(ws), self._receive_loop(ws))
            except (TimeoutError, OSError, websockets.WebSocketException) as exc:
                self.connected.clear()
                attempt += 1
                delay = random.uniform(0.25, min(5.0, 0.5 * 2 ** min(attempt, 4)))
                if _refused(exc):
                    log.error("the broker refused this pod's token: set DETECTOR_AUTH_TOKEN to the broker's",
                              extra={"retry_in_s": round(delay, 2)})
                else:
                    log.warning("broker link down", extra={"error": f"{type(exc).__name__}: {exc}",
                                                           "retry_in_s": round(delay, 2)})
                await asyncio.sleep(delay)

    async def _send_loop(self, ws: websockets.ClientConnection) -> None:
        while True:
            await ws.send(self._report().model_dump_json())
            for event in self._outbox.due():
                await ws.send(event.model_dump_json())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._report_interval_s)

    async def _receive_loop(self, ws: websockets.ClientConnection) -> None:
        async for raw in ws:
            try:
                message = BROKER_MESSAGE.validate_json(raw)
            except ValidationError as exc:
                log.error("bad message from broker", extra={"error": redact_text(str(exc))[:500]})
                continue
            if isinstance(message, Ack):
                self._outbox.acknowledge(message.ids)
            elif self._on_displays is not None:
                self._on_displays(message)


def _refused(error: BaseException) -> bool:
    """The broker closed the link with 1008 (policy violation): this pod's auth token is missing or wrong."""
    return isinstance(error, websockets.ConnectionClosed) and error.rcvd is not None and error.rcvd.code == 1008
