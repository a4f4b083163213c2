"""Prometheus metrics of the broker (own registry; labels never carry URLs or identifiers)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from broker.entries import REFUSAL_REASONS


@dataclass
class BrokerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.refused = Counter("detector_broker_subscriptions_refused_total",
                               "subscription entries refused, by reason (each receipt counts)", ["reason"],
                               registry=r)
        for reason in REFUSAL_REASONS:  # every series exists from the start (alerts see 0, not absent)
            self.refused.labels(reason)
        self.refused_now = Gauge("detector_broker_refused_entries",
                                 "entries of the backend's current list that are refused", registry=r)
        self.subscriptions = Gauge("detector_broker_subscriptions", "subscriptions reconciled", registry=r)
