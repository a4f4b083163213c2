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
        self.outbox = Gauge("detector_outbox_events", "events waiting for the broker's ack", registry=r)
