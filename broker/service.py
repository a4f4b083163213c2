"""The broker's state and behaviour, independent of HTTP: reconcile, sessions, events, stateReport."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket

from broker import protocol
from broker.planning import plan, unplan
from broker.pods import PodRegistry
from broker.reporting import GpuProbe, machine_usage
from broker.runners import Runner
from broker.settings import BrokerSettings
from detector.contract.pods import DetectionEvent, PodSpec

log = logging.getLogger(__name__)

# Classifier result fields → imageDetection keys.
DETECTION_KEYS = {"brand": "carBrand", "body_type": "bodyType", "model": "carModel", "color": None,
                  "license_plate": "licensePlateText"}


def detection_from_fields(fields: dict[str, str | None]) -> protocol.Detection:
    values: dict[str, str | None] = {}
    for key, value in fields.items():
        target = DETECTION_KEYS.get(key)
        if target:
            values[target] = value
    return protocol.Detection.model_validate(values)


@dataclass
class DisplayState:
    session_id: int | None = None
    stage: str | None = None
    announced: dict[str, str | None] | None = None  # the car announced in the current session


@dataclass
class Broker:
    settings: BrokerSettings
    runner: Runner
    pods: PodRegistry = field(default_factory=PodRegistry)
    subscriptions: dict[str, protocol.Subscription] = field(default_factory=dict)
    displays: dict[str, DisplayState] = field(default_factory=dict)
    backend: WebSocket | None = None
    backend_lost_at: float | None = None
    undelivered: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    gpu: GpuProbe = field(default_factory=GpuProbe)
    pending_patches: dict[int, float] = field(default_factory=dict)  # sessionId -> when the patch was sent
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    # ---- subscriptions --------------------------------------------------------------------------

    async def reconcile(self, wanted: list[protocol.Subscription]) -> None:
        if len({s.stream_url for s in wanted}) > self.settings.max_streams:
            log.error("subscription list exceeds max_streams; keeping the first cameras",
                      extra={"max_streams": self.settings.max_streams})
            allowed = list(dict.fromkeys(s.stream_url for s in wanted))[: self.settings.max_streams]
            wanted = [s for s in wanted if s.stream_url in allowed]
        self.subscriptions = {s.subscriptionIdentifier: s for s in wanted}
        specs: dict[str, PodSpec] = plan(wanted, self.settings)
        await self.runner.apply(specs)
        log.info("subscriptions reconciled", extra={"subscriptions": len(wanted), "pods": len(specs)})

    async def restore(self) -> None:
        """After a restart: adopt the pods the runner still has and the subscriptions they serve."""
        specs = await self.runner.recover()
        self.subscriptions = {s.subscriptionIdentifier: s for s in unplan(list(specs.values()))}
        if specs:
            log.info("subscriptions restored", extra={"subscriptions": len(self.subscriptions), "pods": len(specs)})

    def pod_of(self, identifier: str) -> str | None:
        for name, spec in self.runner.running().items():
            if any(display.identifier == identifier for display in spec.subscriptions):
                return name
        return None

    # ---- backend messages -----------------------------------------------------------------------

    async def handle(self, message: protocol.BackendMessage) -> None:
        if isinstance(message, protocol.SetSubscriptionList):
            await self.reconcile(message.subscriptions)
        elif isinstance(message, protocol.Subscribe):
            current = dict(self.subscriptions)
            current[message.payload.subscriptionIdentifier] = message.payload
            await self.reconcile(list(current.values()))
        elif isinstance(message, protocol.Unsubscribe):
            current = dict(self.subscriptions)
            current.pop(message.payload.subscriptionIdentifier, None)
            await self.reconcile(list(current.values()))
        elif isinstance(message, protocol.RequestState):
            await self.send(self.state_report().to_wire())
        elif isinstance(message, protocol.SetSessionId):
            display = self.displays.setdefault(message.payload.displayIdentifier, DisplayState())
            display.session_id = message.payload.sessionId
            if display.session_id is None:
                display.announced = None
        elif isinstance(message, protocol.SetProgressionStage):
            self.displays.setdefault(message.payload.displayIdentifier, DisplayState()).stage = \
                message.payload.progressionStage
        elif isinstance(message, protocol.PatchSessionResult):
            sent = self.pending_patches.pop(message.payload.sessionId, None)
            if sent is None:
                log.warning("patchSessionResult for no pending patchSession",
                            extra={"session": message.payload.sessionId})
                return
            level = logging.INFO if message.payload.success else logging.ERROR
            log.log(level, "patchSession result", extra={"session": message.payload.sessionId,
                                                         "success": message.payload.success,
                                                         "detail": message.payload.message,
                                                         "after_s": round(time.monotonic() - sent, 3)})

    # ---- events from pods -----------------------------------------------------------------------

    async def on_event(self, event: DetectionEvent) -> None:
        if not self.pods.first_time(event.id):
            return
        subscription = self.subscriptions.get(event.subscription)
        if subscription is None:
            log.info("event for a subscription that is gone; dropped", extra={"subscription": event.subscription})
            return
        display = self.displays.setdefault(subscription.display_id, DisplayState())
        if event.update and display.session_id is not None:
            # The car was announced and the backend opened a session for it: patch the session.
            current = protocol.CurrentCar(**detection_from_fields(event.fields).model_dump(
                exclude={"licensePlateConfidence"}))
            await self.send(protocol.PatchSession(sessionId=display.session_id,
                                                  data=protocol.PatchData(currentCar=current)).model_dump(
                mode="json", exclude_none=True))
            self.pending_patches[display.session_id] = time.monotonic()
            display.announced = dict(event.fields)
            return
        if event.update:
            log.info("improved result for a visit already announced; no session to patch",
                     extra={"subscription": event.subscription, "fields": event.fields})
            return
        if display.session_id is not None and display.announced == event.fields:
            return  # the same car during an active session is not re-announced
        display.announced = dict(event.fields)
        message = protocol.ImageDetection(
            subscriptionIdentifier=event.subscription, timestamp=protocol.iso_timestamp(event.captured_at),
            sessionId=display.session_id,
            data=protocol.DetectionData(detection=detection_from_fields(event.fields), modelId=subscription.modelId,
                                        modelName=subscription.modelName))
        await self.send(message.model_dump(mode="json"))

    # ---- backend link ---------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """To the backend now, or kept (bounded, oldest dropped) until one connects."""
        async with self._send_lock:
            if self.backend is None:
                if message.get("type") != "stateReport":
                    self.undelivered.append(message)
                return
            try:
                await self.backend.send_json(message)
            except Exception as exc:  # the socket closed under us; the receive side will notice
                if message.get("type") != "stateReport":
                    log.warning("backend send failed; keeping the message", extra={"error": repr(exc)})
                    self.undelivered.append(message)

    async def flush_undelivered(self) -> None:
        while self.undelivered and self.backend is not None:
            await self.send(self.undelivered.popleft())

    def state_report(self) -> protocol.StateReport:
        connections = []
        for identifier, subscription in sorted(self.subscriptions.items()):
            pod = self.pod_of(identifier)
            report = self.pods.status(pod) if pod else None
            fields = subscription.redacted()
            connections.append(protocol.CameraConnection(
                online=bool(report and report.online),
                **{key: value for key, value in fields.items() if key in protocol.CameraConnection.model_fields}))
        return protocol.StateReport(**machine_usage(self.gpu), cameraConnections=connections)

    async def heartbeat(self) -> None:
        while True:
            await self.send(self.state_report().to_wire())
            await asyncio.sleep(self.settings.heartbeat_interval_sec)

    async def watch_grace(self) -> None:
        """Without a backend for the grace period, stop every camera (a backend that comes back reconciles)."""
        while True:
            await asyncio.sleep(1.0)
            lost = self.backend_lost_at
            if lost is not None and self.subscriptions and \
                    time.monotonic() - lost > self.settings.backend_grace_period_sec:
                log.warning("no backend for the grace period; stopping all cameras")
                await self.reconcile([])
