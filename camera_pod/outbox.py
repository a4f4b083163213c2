"""Events waiting for the broker's acknowledgement (in memory; the durable outbox is Step 6)."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from detector.contract.pods import DetectionEvent


@dataclass
class EventOutbox:
    max_events: int = 10_000
    resend_after_s: float = 3.0
    dropped: int = 0
    _pending: OrderedDict[str, tuple[DetectionEvent, float]] = field(default_factory=OrderedDict)

    def add(self, event: DetectionEvent) -> None:
        if len(self._pending) >= self.max_events:
            self._pending.popitem(last=False)
            self.dropped += 1
        self._pending[event.id] = (event, 0.0)

    def due(self, now: float | None = None) -> list[DetectionEvent]:
        """Events never sent, or sent and not acknowledged for ``resend_after_s``; marks them sent."""
        now = time.monotonic() if now is None else now
        ready = [event for event, sent in self._pending.values() if now - sent >= self.resend_after_s]
        for event in ready:
            self._pending[event.id] = (event, now)
        return ready

    def acknowledge(self, ids: list[str]) -> None:
        for event_id in ids:
            self._pending.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._pending)
