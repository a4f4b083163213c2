"""What the broker knows of each running camera pod: its link, last status and HTTP port."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from fastapi import WebSocket

from detector.contract.pods import Displays, StreamReport

log = logging.getLogger(__name__)
REPORT_STALE_S = 5.0


@dataclass
class PodLink:
    name: str
    socket: WebSocket
    report: StreamReport | None = None
    reported_at: float = 0.0
    displays: Displays | None = None  # the display subscriptions last sent to this pod


@dataclass
class PodRegistry:
    links: dict[str, PodLink] = field(default_factory=dict)

    def attach(self, name: str, socket: WebSocket) -> PodLink:
        link = PodLink(name, socket)
        self.links[name] = link
        return link

    def detach(self, link: PodLink) -> None:
        if self.links.get(link.name) is link:
            del self.links[link.name]

    def update(self, link: PodLink, report: StreamReport) -> None:
        link.report, link.reported_at = report, time.monotonic()

    def status(self, name: str) -> StreamReport | None:
        link = self.links.get(name)
        if link is None or link.report is None or time.monotonic() - link.reported_at > REPORT_STALE_S:
            return None
        return link.report
