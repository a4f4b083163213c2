"""Prometheus metrics of one camera pod (own registry; labels never carry URLs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class PodMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.online = Gauge("detector_stream_online", "1 while frames arrive", registry=r)
        self.fps = Gauge("detector_stream_fps", "measured frames per second", registry=r)
        self.frames = Gauge("detector_stream_frames", "frames delivered by the reader", registry=r)
        self.reconnects = Gauge("detector_stream_reconnects", "reconnects since start", registry=r)
        self.dropped = Gauge("detector_stream_dropped_frames", "frames replaced before use", registry=r)
        self.decode_errors = Gauge("detector_stream_decode_errors", "undecodable frames/snapshots", registry=r)
        self.pipeline_seconds = Histogram("detector_pipeline_seconds", "one pipeline pass", ["subscription"],
                                          registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.events = Counter("detector_events_total", "events produced", ["subscription", "kind"], registry=r)
        self.action_failures = Counter("detector_action_failures_total", "failed actions", ["action"], registry=r)
        self.classifications = Counter("detector_classifications_total",
                                       "leaf classifier results: run, or reused for a vehicle already classified",
                                       ["subscription", "outcome"], registry=r)
        self.gating = Counter("detector_gating_frames_total",
                              "frames by the change gate's verdict: gated (the detector skipped) or why it ran: "
                              "changed, visit (one in progress), refresh", ["subscription", "outcome"], registry=r)
        self.outbox = Gauge("detector_outbox_events", "events waiting for the broker's ack", registry=r)
        self.outbox_items = Gauge("detector_action_outbox_items", "Redis/PostgreSQL writes waiting on disk",
                                  ["outbox", "service"], registry=r)
        self.outbox_oldest_seconds = Gauge("detector_action_outbox_oldest_seconds",
                                           "age of the oldest waiting write (0 when none)", ["outbox", "service"],
                                           registry=r)
        self.outbox_applied = Counter("detector_action_outbox_applied_total", "writes applied", ["kind"], registry=r)
        self.outbox_retries = Counter("detector_action_outbox_retries_total",
                                      "failed attempts while a service was unavailable", ["service"], registry=r)
        self.outbox_dropped = Counter("detector_action_outbox_dropped_total",
                                      "writes dropped: outbox full (bound) or image past its TTL (expired)",
                                      ["kind", "reason"], registry=r)
        self.outbox_dead = Counter("detector_action_outbox_dead_total", "writes moved to dead letters (permanent "
                                   "error)", ["kind"], registry=r)
