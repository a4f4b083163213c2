"""The broker's state and behaviour, independent of HTTP: reconcile, sessions, events, stateReport."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket

from broker import entries, protocol
from broker.delivery import Delivery, Outgoing
from broker.metrics import BrokerMetrics
from broker.planning import plan, unplan
from broker.pods import PodLink, PodRegistry
from broker.reporting import Usage, machine_usage, workload_usage
from broker.runners import Runner
from broker.settings import BrokerSettings
from detector.contract.pods import Ack, DetectionEvent, PodSpec
from detector.kit.gpus import GpuProbe

log = logging.getLogger(__name__)

# Classifier result fields → imageDetection keys.
DETECTION_KEYS = {"brand": "carBrand", "body_type": "bodyType", "model": "carModel", "color": None,
                  "license_plate": "licensePlateText", "license_plate_confidence": "licensePlateConfidence"}
CONFIDENCE_SUFFIX = "_confidence"  # a read's confidence travels beside it; it does not make another car


def _answer(fields: dict[str, str | None]) -> dict[str, str | None]:
    return {key: value for key, value in fields.items() if not key.endswith(CONFIDENCE_SUFFIX)}


def same_car(announced: dict[str, str | None] | None, fields: dict[str, str | None]) -> bool:
    """The same answer (brand, body type, plate, ...), whatever the confidences."""
    return announced is not None and _answer(announced) == _answer(fields)


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
    backend_since: float = field(default_factory=time.time)  # epoch: when the backend came or went (the console)
    gpu: GpuProbe = field(default_factory=GpuProbe)
    pending_patches: dict[int, float] = field(default_factory=dict)  # sessionId -> when the patch was sent
    # The backend's entries that are refused, by entry (identifier or "#position"): what an operator sees.
    refusals: dict[str, entries.Refusal] = field(default_factory=dict)
    metrics: BrokerMetrics = field(default_factory=BrokerMetrics)
    delivery: Delivery = field(init=False)
    last_events: dict[str, DetectionEvent] = field(default_factory=dict)  # by subscription (the console)

    def __post_init__(self) -> None:
        self.delivery = Delivery(self._acknowledge, max_kept=self.settings.max_kept_events,
                                 max_age_s=self.settings.event_max_age_sec)
        self.metrics.watch(self)

    # ---- subscriptions --------------------------------------------------------------------------

    async def reconcile(self, wanted: list[protocol.Subscription]) -> None:
        if len({s.stream_url for s in wanted}) > self.settings.max_streams:
            log.error("subscription list exceeds max_streams; keeping the first cameras",
                      extra={"max_streams": self.settings.max_streams})
            allowed = list(dict.fromkeys(s.stream_url for s in wanted))[: self.settings.max_streams]
            wanted = [s for s in wanted if s.stream_url in allowed]
        self.subscriptions = {s.subscriptionIdentifier: s for s in wanted}
        self.metrics.subscriptions.set(len(wanted))
        specs: dict[str, PodSpec] = plan(wanted, self.settings)
        with self.metrics.reconcile_seconds.time():
            await self.runner.apply(specs)
            for link in list(self.pods.links.values()):
                await self.send_displays(link)
        self.pods.forget(specs)
        log.info("subscriptions reconciled", extra={"subscriptions": len(wanted), "pods": len(specs)})

    async def restore(self) -> None:
        """After a restart: adopt the pods the runner still has and the subscriptions they serve."""
        specs = await self.runner.recover()
        self.subscriptions = {s.subscriptionIdentifier: s for s in unplan(list(specs.values()))}
        if specs:
            log.info("subscriptions restored", extra={"subscriptions": len(self.subscriptions), "pods": len(specs)})
        if specs and not self.runner.running():  # remembered, not running (local pods die with their broker)
            await self.reconcile(list(self.subscriptions.values()))

    def _refuse(self, kind: str, refused: list[entries.Refusal], *, replace: bool) -> None:
        """One log line and one count per refused entry, and the refusals kept as state (first seen kept).

        ``replace``: a subscription list is the whole desired state, so are its refusals; a legacy
        ``subscribe`` refuses (or, accepted, clears) one entry only."""
        before = self.refusals
        if replace:
            self.refusals = {}
        for refusal in refused:
            self.metrics.refused.labels(refusal.reason).inc()
            log.error("subscription entry refused", extra={"type": kind, "subscription": refusal.entry,
                                                           "reason": refusal.reason, "error": refusal.detail})
            previous = before.get(refusal.entry)
            same = previous is not None and (previous.reason, previous.detail) == (refusal.reason, refusal.detail)
            self.refusals[refusal.entry] = previous if same and previous is not None else refusal
        self.metrics.refused_now.set(len(self.refusals))

    def _keeping_refused(self, checked: entries.Entries) -> list[protocol.Subscription]:
        """The accepted entries, plus the running version of any subscription whose new entry is refused:
        a bad update never stops a camera that works (the heartbeat shows what it still runs)."""
        wanted = {s.subscriptionIdentifier: s for s in checked.accepted}
        for refusal in checked.refused:
            identifier = entries.identifier_of(refusal)
            if identifier and identifier not in wanted and identifier in self.subscriptions:
                wanted[identifier] = self.subscriptions[identifier]
                log.warning("refused entry for a running subscription; it keeps running as it was",
                            extra={"subscription": identifier})
        return list(wanted.values())

    async def send_displays(self, link: PodLink) -> None:
        """The pod's display subscriptions, when they differ from what it was last sent (and on every new link):
        a running pod applies them live, so a crop or model change, or a display added, restarts nothing."""
        spec = self.runner.running().get(link.name)
        if spec is None:
            return
        displays = spec.displays()
        if link.displays == displays:
            return
        try:
            await link.socket.send_text(displays.model_dump_json())
        except Exception as exc:  # the link closed under us: the pod gets them when it is back
            log.info("display subscriptions not sent; sent when the pod is back",
                     extra={"pod": link.name, "error": type(exc).__name__})
            return
        link.displays = displays

    def clear_refusal(self, identifier: str) -> None:
        if self.refusals.pop(identifier, None) is not None:
            self.metrics.refused_now.set(len(self.refusals))

    def pod_of(self, identifier: str) -> str | None:
        for name, spec in self.runner.running().items():
            if any(display.identifier == identifier for display in spec.subscriptions):
                return name
        return None

    # ---- backend messages -----------------------------------------------------------------------

    async def handle(self, message: protocol.BackendMessage) -> None:
        self.metrics.received.labels(message.type).inc()
        if isinstance(message, protocol.SetSubscriptionList):
            checked = entries.read(message.subscriptions, time.time())
            self._refuse(message.type, checked.refused, replace=True)
            await self.reconcile(self._keeping_refused(checked))
        elif isinstance(message, protocol.Subscribe):
            checked = entries.read([message.payload], time.time())
            self._refuse(message.type, checked.refused, replace=False)
            if checked.accepted:
                subscription = checked.accepted[0]
                self.clear_refusal(subscription.subscriptionIdentifier)
                current = dict(self.subscriptions)
                current[subscription.subscriptionIdentifier] = subscription
                await self.reconcile(list(current.values()))
        elif isinstance(message, protocol.Unsubscribe):
            current = dict(self.subscriptions)
            current.pop(message.payload.subscriptionIdentifier, None)
            self.clear_refusal(message.payload.subscriptionIdentifier)
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

    async def on_event(self, event: DetectionEvent, pod: str = "") -> None:
        """At-least-once from pods: an event is acknowledged once delivered (or settled), each id handled once."""
        state = self.delivery.state(event.id)
        if state != "new":
            self.metrics.events.labels("duplicate").inc()
            if state == "done":
                await self.delivery.settle(pod, [event.id])  # the pod missed the acknowledgement
            return  # pending: queued already, acknowledged when sent
        if event.subscription in self.subscriptions:
            self.last_events[event.subscription] = event
        message = self._message_for(event)
        self.metrics.events.labels("settled" if message is None else "routed").inc()
        if message is None:
            await self.delivery.settle(pod, [event.id])
            return
        kind, text = message
        self.delivery.enqueue(Outgoing(text, events=((pod, event.id),), captured_at=event.captured_at, type=kind))

    def _message_for(self, event: DetectionEvent) -> tuple[str, str] | None:
        """The wire message an event makes, as (type, JSON): imageDetection or patchSession; None when none."""
        subscription = self.subscriptions.get(event.subscription)
        if subscription is None:
            log.info("event for a subscription that is gone; dropped", extra={"subscription": event.subscription})
            return None
        display = self.displays.setdefault(subscription.display_id, DisplayState())
        if event.update and display.session_id is not None:
            # The car was announced and the backend opened a session for it: patch the session.
            current = protocol.CurrentCar(**detection_from_fields(event.fields).model_dump(
                exclude={"licensePlateConfidence"}))
            self.pending_patches[display.session_id] = time.monotonic()
            display.announced = dict(event.fields)
            patch = protocol.PatchSession(sessionId=display.session_id, data=protocol.PatchData(currentCar=current))
            return patch.type, patch.model_dump_json(exclude_none=True)
        # A better result for a visit already announced, with no session to patch, is announced again: the
        # original sent one imageDetection per frame, so a backend takes repeats and keeps the latest.
        if display.session_id is not None and same_car(display.announced, event.fields):
            return None  # the same car during an active session is not re-announced
        display.announced = dict(event.fields)
        announcement = protocol.ImageDetection(
            subscriptionIdentifier=event.subscription, timestamp=protocol.iso_timestamp(event.captured_at),
            sessionId=display.session_id,
            data=protocol.DetectionData(detection=detection_from_fields(event.fields), modelId=subscription.modelId,
                                        modelName=subscription.modelName))
        return announcement.type, announcement.to_json()

    async def _acknowledge(self, pod: str, event_ids: list[str]) -> None:
        link = self.pods.links.get(pod)
        if link is None or not event_ids:
            return  # the pod sends the events again once it is back; they are acknowledged then
        try:
            await link.socket.send_text(Ack(ids=event_ids).model_dump_json())
        except Exception as exc:  # the link closed under us: same as above
            log.info("acknowledgement not sent; the pod will resend", extra={"pod": pod, "error": type(exc).__name__})

    # ---- backend link ---------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        """To the backend now, or kept (bounded) until one connects; a stateReport is never kept."""
        kind = str(message.get("type"))
        self.delivery.enqueue(Outgoing(json.dumps(message, separators=(",", ":")), kept=kind != "stateReport",
                                       type=kind))

    def connect_backend(self, socket: WebSocket) -> None:
        self.backend, self.backend_lost_at, self.backend_since = socket, None, time.time()
        self.metrics.backend_connections.inc()
        self.delivery.connect(socket)

    def disconnect_backend(self, socket: WebSocket) -> bool:
        """True when ``socket`` was the current backend (a replaced connection ending is not a loss)."""
        self.delivery.disconnect(socket)
        if self.backend is not socket:
            return False
        self.backend, self.backend_lost_at, self.backend_since = None, time.monotonic(), time.time()
        return True

    def usage(self) -> Usage:
        """Load figures of the machines doing the camera work (``broker.reporting`` says what each means)."""
        if self.settings.runner == "kubernetes":
            return workload_usage(report.usage if report else None
                                  for report in map(self.pods.status, self.runner.running()))
        return machine_usage(self.gpu)

    def state_report(self) -> protocol.StateReport:
        connections = []
        for identifier, subscription in sorted(self.subscriptions.items()):
            pod = self.pod_of(identifier)
            report = self.pods.status(pod) if pod else None
            connections.append(subscription.connection(online=bool(report and report.online)))
        return protocol.StateReport(**self.usage(), cameraConnections=connections)

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
