"""Prometheus metrics of the broker (own registry), the fleet's included: one scrape of the broker sees every camera.

Two kinds: counters the broker increments as things happen (``BrokerMetrics``), and what it knows now, read at
scrape time by ``FleetCollector`` (the backend link, the backlog, and each running camera pod's latest report).
Read at scrape time, a camera that is gone is simply not there: no stale series. Labels never carry a URL (they
carry credentials): a camera pod is named ``cam-<hash of its URL>``, a display by its subscription identifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from broker.decoding import MESSAGE_TYPES
from broker.entries import REFUSAL_REASONS

if TYPE_CHECKING:
    from broker.service import Broker
    from detector.contract.pods import PodSpec, StreamReport

# Why a backend message is ignored: over max_message_bytes, not JSON, no known type, a known type but invalid.
MESSAGE_REFUSALS = ("too_large", "not_json", "unknown_type", "invalid")
# What became of a detection event a pod sent: queued for the backend, already queued or delivered (a resend),
# or settled without a message (its subscription is gone, or the car was announced already in this session).
EVENT_OUTCOMES = ("routed", "duplicate", "settled")
SENT_TYPES = ("stateReport", "imageDetection", "patchSession")


def message_refusal(kind: str) -> str:
    """The ``reason`` label of a refused message, from ``decoding.BadMessage.kind`` (its type or what it is)."""
    if kind in MESSAGE_TYPES:
        return "invalid"
    return "not_json" if kind == "(not JSON)" else "unknown_type"


@dataclass
class BrokerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.refused = Counter("detector_broker_subscriptions_refused_total",
                               "subscription entries refused, by reason (each receipt counts)", ["reason"],
                               registry=r)
        self.refused_now = Gauge("detector_broker_refused_entries",
                                 "entries of the backend's current list that are refused", registry=r)
        self.subscriptions = Gauge("detector_broker_subscriptions", "subscriptions reconciled", registry=r)
        self.received = Counter("detector_broker_messages_received_total", "backend messages handled, by type",
                                ["type"], registry=r)
        self.refused_messages = Counter("detector_broker_messages_refused_total",
                                        "backend messages ignored, by reason", ["reason"], registry=r)
        self.events = Counter("detector_broker_events_total",
                              "detection events from the camera pods, by what became of them", ["outcome"],
                              registry=r)
        self.backend_connections = Counter("detector_broker_backend_connections_total",
                                           "backend WebSocket connections accepted", registry=r)
        self.reconcile_seconds = Histogram("detector_broker_reconcile_seconds",
                                           "one reconcile: pods applied by the runner, displays sent", registry=r,
                                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        # Every series exists from the start: a rate or an alert sees 0, not an absent series.
        for counter, labels in ((self.refused, REFUSAL_REASONS), (self.received, MESSAGE_TYPES),
                                (self.refused_messages, MESSAGE_REFUSALS), (self.events, EVENT_OUTCOMES)):
            for label in labels:
                counter.labels(label)

    def watch(self, broker: Broker) -> None:
        """Serve ``broker``'s current state (backlog, backend link, camera pods) from this registry."""
        self.registry.register(FleetCollector(broker))


class FleetCollector(Collector):
    """The broker's state and each running camera pod's latest report, read when scraped."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._broker_families()
        yield from camera_families(self.broker.runner.running(), self.broker.pods.status,
                                   self.broker.pods.restarts, time.time())

    def _broker_families(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        broker, delivery = self.broker, self.broker.delivery
        yield GaugeMetricFamily("detector_broker_backend_connected", "1 while a backend is connected",
                                value=float(broker.backend is not None))
        yield GaugeMetricFamily("detector_broker_backlog_messages",
                                "messages waiting for the backend (kept while none is connected)",
                                value=float(len(delivery)))
        yield GaugeMetricFamily("detector_broker_pods", "camera pods the runner runs",
                                value=float(len(broker.runner.running())))
        sent = CounterMetricFamily("detector_broker_messages_sent", "messages written to the backend, by type",
                                   labels=["type"])
        for kind in sorted({*SENT_TYPES, *delivery.sent}):
            sent.add_metric([kind], float(delivery.sent.get(kind, 0)))
        yield sent
        yield CounterMetricFamily("detector_broker_events_delivered",
                                  "detection events whose message reached the backend", value=float(delivery.delivered))
        dropped = CounterMetricFamily("detector_broker_events_dropped",
                                      "detection events not delivered: past the max age (expired), or let go to "
                                      "their pod to send again when the backlog was full (evicted)",
                                      labels=["reason"])
        dropped.add_metric(["expired"], float(delivery.expired))
        dropped.add_metric(["evicted"], float(delivery.evicted))
        yield dropped


def camera_families(running: dict[str, PodSpec], status: Callable[[str], StreamReport | None],
                    restarts: dict[str, int], now: float) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
    """Per camera pod (label ``camera_pod``) and per display (and ``subscription``), from the latest reports.

    Not ``pod``: Prometheus gives each target a ``pod`` label of its own (the broker's), which would rename ours.

    A pod without a fresh report shows ``reporting`` 0 and ``online`` 0, and none of the figures it did not send.
    """
    g = {name: GaugeMetricFamily(f"detector_camera_{name}", text, labels=["camera_pod"]) for name, text in (
        ("reporting", "1 while the pod's status reaches the broker"),
        ("online", "1 while frames arrive (and every display has a model)"),
        ("fps", "frames per second the pod reads"),
        ("frame_age_seconds", "age of the pod's latest frame"),
        ("cpu_cores", "CPU the pod's process uses, in cores"),
        ("memory_bytes", "resident memory of the pod's process"))}
    c = {name: CounterMetricFamily(f"detector_camera_{name}", text, labels=["camera_pod"]) for name, text in (
        ("frames", "frames the pod read since it started"),
        ("reconnects", "stream reconnects since the pod started"),
        ("restarts", "times the pod's process started again (a crash, a kill, a replacement)"))}
    errors = GaugeMetricFamily("detector_subscription_model_error",
                               "1 while the display's model does not load (or a new one is kept out)",
                               labels=["camera_pod", "subscription"])
    info = GaugeMetricFamily("detector_subscription_info", "the displays each camera pod serves (always 1)",
                             labels=["camera_pod", "subscription", "model_id"])
    for pod, spec in sorted(running.items()):
        report = status(pod)
        c["restarts"].add_metric([pod], float(restarts.get(pod, 0)))
        g["reporting"].add_metric([pod], float(report is not None))
        g["online"].add_metric([pod], float(bool(report and report.online)))
        for display in spec.subscriptions:
            info.add_metric([pod, display.identifier, str(display.model_id)], 1.0)
            if report is not None:
                errors.add_metric([pod, display.identifier], float(display.identifier in report.display_errors))
        if report is None:
            continue
        g["fps"].add_metric([pod], report.fps)
        c["frames"].add_metric([pod], float(report.frames))
        c["reconnects"].add_metric([pod], float(report.reconnects))
        if report.last_frame_at is not None:
            g["frame_age_seconds"].add_metric([pod], max(0.0, now - report.last_frame_at))
        if report.usage is not None:
            g["cpu_cores"].add_metric([pod], report.usage.cpu_used_cores)
            g["memory_bytes"].add_metric([pod], float(report.usage.memory_used_bytes))
    return [*g.values(), *c.values(), errors, info]
