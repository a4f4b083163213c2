"""From the backend's subscription list to one PodSpec per camera stream."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from broker.protocol import Subscription
from broker.settings import BrokerSettings
from detector.contract.pods import CropBox, DisplaySubscription, PodSpec, ReceivedEntry, StreamSpec


def pod_name(stream_url: str) -> str:
    """Stable, DNS-safe and credential-free: a hash of the URL, never the URL itself."""
    return "cam-" + hashlib.sha256(stream_url.encode()).hexdigest()[:12]


def _display(subscription: Subscription) -> DisplaySubscription:
    corners = subscription.crop
    crop = CropBox(x1=corners[0], y1=corners[1], x2=corners[2], y2=corners[3]) if corners else None
    received = ReceivedEntry.model_validate(subscription.model_dump(include=set(ReceivedEntry.model_fields)))
    return DisplaySubscription(identifier=subscription.subscriptionIdentifier, model_url=subscription.modelUrl,
                               model_id=subscription.modelId, model_name=subscription.modelName, crop=crop,
                               received=received)


def plan(subscriptions: list[Subscription], settings: BrokerSettings) -> dict[str, PodSpec]:
    by_stream: dict[tuple[str, int | None], list[Subscription]] = defaultdict(list)
    for subscription in subscriptions:
        snapshot = subscription.stream_kind == "snapshot"
        by_stream[(subscription.stream_url, subscription.snapshotInterval if snapshot else None)].append(subscription)
    specs = {}
    for (url, interval), members in sorted(by_stream.items()):
        name = pod_name(f"{url}|{interval}")
        kind = members[0].stream_kind
        specs[name] = PodSpec(
            name=name, stream=StreamSpec(url=url, kind=kind, snapshot_interval_ms=interval),
            subscriptions=sorted((_display(member) for member in members), key=lambda d: d.identifier),
            broker_url=settings.pod_broker_url(name), target_fps=settings.target_fps,
            poll_interval_ms=settings.poll_interval_ms,
            reconnect_interval_sec=settings.reconnect_interval_sec, max_retries=settings.max_retries,
            event_mode=settings.event_mode, stable_frames=settings.stable_frames,
            visit_gap_s=settings.visit_gap_sec)
    return specs


def _subscription(spec: PodSpec, display: DisplaySubscription) -> Subscription:
    if display.received is not None:  # the entry exactly as the backend sent it
        return Subscription.model_validate({**display.received.model_dump(exclude_none=True),
                                            "subscriptionIdentifier": display.identifier,
                                            "modelId": display.model_id, "modelName": display.model_name})
    rtsp, crop = spec.stream.kind == "rtsp", display.crop
    return Subscription(
        subscriptionIdentifier=display.identifier, rtspUrl=spec.stream.url if rtsp else None,
        snapshotUrl=None if rtsp else spec.stream.url, snapshotInterval=spec.stream.snapshot_interval_ms,
        modelUrl=display.model_url, modelId=display.model_id, modelName=display.model_name,
        cropX1=crop.x1 if crop else None, cropY1=crop.y1 if crop else None,
        cropX2=crop.x2 if crop else None, cropY2=crop.y2 if crop else None)


def unplan(specs: list[PodSpec]) -> list[Subscription]:
    """The inverse of ``plan``: the subscriptions running pods serve (what a restarted broker rebuilds)."""
    if any(spec.stream.kind == "file" for spec in specs):
        raise ValueError("file streams do not come from subscriptions")
    subscriptions = [_subscription(spec, display) for spec in specs for display in spec.subscriptions]
    return sorted(subscriptions, key=lambda s: s.subscriptionIdentifier)
